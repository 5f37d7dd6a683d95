"""The api: a small HTTP server inside `pipeline run` (/healthz, /metrics, /api/components,
taps), and the figures it serves, read from the runtime's counters, buffers and runners.

Nothing here is imported unless the config has `api:` (or `run --api`), `tap` or `top`
runs, or an internal_metrics source is used: a `--once` run does not pay for it.
"""
