"""Codecs: bytes to records and back, with no knowledge of the running graph.

forward_protocol.py (msgpack framing, EventTime, chunks, handshake digests, inflate),
forward_messages.py (forward messages to events, ack replies), prometheus_text.py,
json_stream.py (JSON values framed in a byte stream), formats.py (line and document
decoders, JSON), encode.py (the sinks' encoders: json, msgpack, ltsv, mackerel), http.py (a
bounded HTTP/1.1 client), netlink_diag.py (sock_diag), edge.py (the rule every record
entering the pipeline is made to), quote.py (peer bytes shown safely in one log line),
prometheus_names.py (records as Prometheus series: the exporter's and remote write's
declaration), remote_write.py (Prometheus' remote-write WriteRequest and snappy).

May import: pipeline.event and config (option types); nothing of the engine, api, cli or
plugins.
"""
