"""A small HTTP server on 127.0.0.1 whose answers a test sets, for the HTTP sources."""

from __future__ import annotations

import http.server
import threading
import time


class Server:
    """routes: path -> (status, headers, body, delay seconds); a `Transfer-Encoding: chunked`
    header sends the body in chunks, without Content-Length."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict[str, str], bytes, float]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                status, headers, body, delay = outer.routes.get(self.path, (404, {}, b"no such page", 0))
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if headers.get("Transfer-Encoding") == "chunked":  # no length said up front
                        self.end_headers()
                        for i in range(0, len(body), 1 << 16):
                            part = body[i:i + (1 << 16)]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout test)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def route(self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None,
              delay: float = 0) -> None:
        self.routes[path] = (status, headers or {"Content-Type": "application/json"}, body, delay)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
