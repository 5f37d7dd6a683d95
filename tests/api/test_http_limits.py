"""HTTP sources against a server that trickles its answer: the worker thread reading it
stops when the poll times out, and SIGTERM ends the process at once."""

from __future__ import annotations

import signal
import socket
import time

from helpers import accept_forever, start_pipeline, wait_for


class Trickler:
    """Sends the head of a Prometheus answer, then a byte of its body every 0.2 s, each one
    well within any read timeout, until the client closes; records when each client left."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.opened: list[float] = []
        self.closed: list[float] = []
        accept_forever(self.sock, self.serve)

    def serve(self, conn: socket.socket) -> None:
        self.opened.append(time.monotonic())
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                while True:
                    conn.sendall(b"#")
                    time.sleep(0.2)
            except OSError:
                self.closed.append(time.monotonic())

    def close(self) -> None:
        self.sock.close()


def _scraping(tmp_path, server: Trickler, interval: str):
    """`pipeline run` scraping `server` every `interval`, each scrape given up after 500ms."""
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
sources:
  scrape: {{type: prometheus, url: "http://127.0.0.1:{server.port}/metrics", interval: {interval}, timeout: 500ms}}
sinks:
  out: {{type: file, inputs: [scrape], path: {tmp_path / "out.jsonl"}}}
""")
    return start_pipeline("run", str(conf))


def test_a_trickled_answer_is_given_up_when_the_poll_times_out_and_sigterm_ends_the_run(tmp_path):
    server = Trickler()
    proc = _scraping(tmp_path, server, "1s")
    try:
        assert wait_for(lambda: len(server.opened) >= 2, timeout=20)
        # each scrape's thread let go within 2 x timeout of its start (it read for ever)
        assert wait_for(lambda: len(server.closed) >= 1, timeout=5)
        assert server.closed[0] - server.opened[0] < 2.5
        time.sleep(0.3)  # the next scrape is reading
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - stopping < 5, "SIGTERM waited for the thread reading the answer"
        assert proc.returncode == 0, err.decode()
        assert b"timed out" in err and b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()


def test_threads_stop_so_a_long_run_does_not_pile_them_up(tmp_path):
    server = Trickler()
    proc = _scraping(tmp_path, server, "300ms")
    try:
        assert wait_for(lambda: len(server.opened) >= 10, timeout=30)
        alive = len(server.opened) - len(server.closed)
        assert alive <= 3, f"{alive} of {len(server.opened)} scrapes still reading"
        threads = int(open(f"/proc/{proc.pid}/status").read().split("Threads:")[1].split()[0])
        assert threads <= 6
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        server.close()
