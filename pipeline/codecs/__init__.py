"""Codecs: bytes to records and back, with no knowledge of the running graph.

forward_protocol.py (msgpack framing, EventTime, chunks, handshake digests, inflate),
forward_messages.py (forward messages to events, ack replies), prometheus_text.py,
json_stream.py (JSON values framed in a byte stream), formats.py (line and document
decoders, JSON), encode.py (the sinks' encoders: json, msgpack, ltsv, mackerel, influx line
protocol), http.py (a bounded HTTP/1.1 client, and what its answers mean to a sink),
http_server.py (an HTTP/1.1 server for POSTed data), http_bodies.py (records from request
bodies), connections.py (a server's bounded, idle-closed connections and TLS), netlink_diag.py
(sock_diag), edge.py (the rule every record entering the pipeline is made to), quote.py (peer
bytes shown safely in one log line), prometheus_names.py (records as Prometheus series: the
exporter's and remote write's declaration), remote_write.py (Prometheus' remote-write
WriteRequest and snappy), syslog.py (facility and severity names, RFC 6587 framing, writing
RFC 5424 and 3164).

May import: pipeline.event and config (option types); nothing of the engine, api, cli or
plugins.
"""
