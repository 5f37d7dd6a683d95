"""The config: what a YAML file may say and how it becomes a checked graph.

options.py (option types and declarations, `resolve`), addresses.py (URL and listen
addresses), templates.py (values with placeholders filled per event, record key paths),
fields.py (the fields each plugin declares it emits), dashboard.py (the `api.dashboard`
section), yaml_loader.py (YAML with line numbers and bounds) and graph.py (`load_config`:
every problem at once, with file, line and key; `describe` for `check`).

May import: pipeline.event, and the plugin interface (pipeline.plugin) to find a plugin
class by type; nothing of the engine, codecs, api or cli. Imports nothing on import of the
package itself, so that `pipeline.config.options` is cheap for everyone.
"""
