"""The address types of options: a URL to connect to, a `host:port` to listen on."""

from __future__ import annotations

from urllib.parse import urlsplit

from .options import Invalid, Type, _kind

_URL_FORMS = {
    "unix": ("unix:///path.sock", "/path.sock"),
    "tcp": ("tcp://host:port",),
    "http": ("http://host:port/path",),
    "https": ("https://host:port/path",),
}


class URL(Type):
    """An address in one of `schemes`; a bare absolute path is a unix socket where `unix` is one.
    Checked here so that `check` names the key, not a failed connection at run time."""

    name = "url"

    def __init__(self, *schemes: str):
        self.schemes = schemes
        forms = [f for s in schemes if not (s == "https" and "http" in schemes) for f in _URL_FORMS[s]]
        self.expected = "expected a URL like " + (
            f"{', '.join(forms[:-1])} or {forms[-1]}" if len(forms) > 1 else forms[0])

    def convert(self, value, path, errors, node):
        if not isinstance(value, str):
            raise Invalid(f"{self.expected}, got {_kind(value)}")
        if value.startswith("/") and "unix" in self.schemes:
            value = "unix://" + value
        problem = self._problem(value)
        if problem is not None:
            raise Invalid(f"{self.expected}, got {_kind(value)}{problem}")
        return value

    def _problem(self, value: str) -> str | None:
        """None for a usable address, else why not (a suffix of the message, maybe empty)."""
        if "://" not in value:
            hint = next((s for s in self.schemes if s != "unix"), None)
            return f" (did you mean '{hint}://{value}'?)" if hint and value[:1] not in ("", "/") else ""
        try:
            url = urlsplit(value)
        except ValueError as e:  # "Invalid IPv6 URL": a [ without its ]
            return f" ({e})"
        if url.scheme not in self.schemes:
            return f" ({url.scheme}:// is not one of {', '.join(s + '://' for s in self.schemes)})"
        if url.scheme == "unix":
            return None if url.path.startswith("/") and not url.netloc else " (the socket path must be absolute)"
        try:
            port = url.port
        except ValueError:
            return " (the port is not a number from 0 to 65535)"
        if not url.hostname:
            return " (no host)"
        if url.scheme == "tcp" and (port is None or url.path not in ("", "/")):
            return " (tcp:// takes a host and a port, nothing more)"
        return None


LOOPBACK = "127.0.0.1"
#: where the api listens unless told otherwise (fluentd's monitor_agent port)
API_ADDRESS = "127.0.0.1:24220"


def parse_listen(value: str | int) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `:port` or a port -> (host, port). Without a host it is the
    loopback one: a server is reachable from elsewhere only where the address says so."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Invalid(f"expected an address like 127.0.0.1:24220, got {_kind(value)}")
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or int(port) > 65535:
        raise Invalid(f"expected an address like 127.0.0.1:24220 (host:port), got {_kind(value)}")
    return host or LOOPBACK, int(port)


class Listen(Type):
    """An address to listen on, `host:port` (the text as written is kept)."""

    name = "host:port"

    def convert(self, value, path, errors, node):
        host, port = parse_listen(value)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
