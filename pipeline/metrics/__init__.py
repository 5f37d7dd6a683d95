"""Metrics maths, free of I/O and of the running graph: rates.py (per-second rates from
counters, resets and gaps), aggregates.py (window functions), sketch.py (DDSketch
quantiles), histogram.py (fixed-bucket timings), docker_stats.py (CPU, memory and I/O
figures from the Docker stats API's documents).

May import: pipeline.event and config (option types); nothing of the engine, codecs, api,
cli or plugins.
"""
