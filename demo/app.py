"""The demo stack's uWSGI app: quick pages, slow ones and failing ones, so every counter the
pipeline reads (requests, avg_rt, exceptions, tx) moves."""

import time


def application(env, start_response):
    path = env["PATH_INFO"]
    if path == "/error":
        raise RuntimeError("the demo's failing page")
    if path == "/slow":
        time.sleep(0.2)
    body = b"ok\n" * (100 if path == "/big" else 1)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
