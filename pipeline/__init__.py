"""pipeline: sources -> filters -> sinks, described by one YAML file."""

__version__ = "0.1.0"
