"""The api: a small HTTP server inside `pipeline run` (/healthz, /metrics, /api/components,
taps, the dashboard), serving what the engine's read-only view (engine/figures.py) shows.
Nothing here is imported unless the config has `api:` (or `run --api`), `tap` or `top`
runs: a `--once` run does not pay for it.

May import: config, codecs, metrics, engine.figures (the view it is handed),
engine.tagmatch and engine.context (its rate-limited log); never the runtime itself. Started by the cli, which hands it the view.
"""
