"""The demo stack's load generator: a few clients asking demo/app.py for a mix of pages, forever.

    python3 demo/load.py http://127.0.0.1:8000
"""

import random
import sys
import threading
import time
import urllib.error
import urllib.request

PAGES = ["/"] * 6 + ["/big"] * 2 + ["/slow", "/error"]
CLIENTS = 4
PAUSE = 0.05


def client(base: str) -> None:
    while True:
        try:
            urllib.request.urlopen(base + random.choice(PAGES), timeout=5).read()
        except urllib.error.HTTPError:
            pass  # /error answers 500: that is the point
        except OSError:
            time.sleep(1)  # the app is not up yet (compose starts both at once), or restarting
        time.sleep(PAUSE)


def main() -> None:
    base = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000").rstrip("/")
    for _ in range(CLIENTS - 1):
        threading.Thread(target=client, args=(base,), daemon=True).start()
    client(base)


if __name__ == "__main__":
    main()
