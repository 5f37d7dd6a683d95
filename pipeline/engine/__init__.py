"""The engine: runs a checked graph.

runtime.py puts the Runtime together from routing.py (batches through filters into sink
buffers, the reload gate), lifecycle.py (start, run, stop, state, exit status) and
signals.py; schedule.py runs sources and ticks; sink_runner.py writes buffered chunks with
retry and quarantine; reload.py swaps in a new graph; ack.py carries end-to-end
acknowledgements; context.py is what each component is handed (log, counters, errors,
state); tagmatch.py compiles fluentd tag patterns; process.py sets the process up (GC,
allocator); figures.py is the read-only view of a running graph that the engine hands out.

May import: pipeline.event, pipeline.plugin, pipeline.buffer, config, codecs, metrics.
Never the api, cli or any plugin module: the command that starts a graph wires the api
to it through figures.Figures.
"""
