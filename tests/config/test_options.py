"""Typed options: durations, sizes and the errors for values that are not."""

import pytest

from pipeline.config.addresses import URL
from pipeline.config.options import Duration, Errors, Int, Invalid, ListOf, Size, Str, with_text


@pytest.mark.parametrize("text, seconds", [
    ("10s", 10.0), ("500ms", 0.5), ("1m", 60.0), ("1.5m", 90.0), ("2h", 7200.0), ("1d", 86400.0),
    ("250us", 0.00025), (3, 3.0), (0.25, 0.25), (" 5 s ", 5.0),
])
def test_durations(text, seconds):
    assert Duration().convert(text, "x", Errors(), None) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["10 parsecs", "", "s", "-1s", True, [1], -2])
def test_bad_durations(value):
    with pytest.raises(Invalid):
        Duration().convert(value, "x", Errors(), None)


@pytest.mark.parametrize("text, size", [
    ("64KiB", 65536), ("256MiB", 256 * 1024**2), ("1GB", 10**9), ("10k", 10_000), (4096, 4096), ("1.5KiB", 1536),
])
def test_sizes(text, size):
    assert Size().convert(text, "x", Errors(), None) == size


@pytest.mark.parametrize("value", ["12 potatoes", "MiB", True, -5, "1.2.3KiB"])
def test_bad_sizes(value):
    with pytest.raises(Invalid):
        Size().convert(value, "x", Errors(), None)


@pytest.mark.parametrize("schemes, value, url", [
    (("unix", "tcp", "http"), "/run/app/stats.sock", "unix:///run/app/stats.sock"),
    (("unix", "tcp", "http"), "unix:///run/app/stats.sock", "unix:///run/app/stats.sock"),
    (("unix", "tcp", "http"), "tcp://127.0.0.1:9191", "tcp://127.0.0.1:9191"),
    (("unix", "tcp", "http"), "http://127.0.0.1:9191/", "http://127.0.0.1:9191/"),
    (("http", "https"), "https://[::1]:9100/metrics?x=1", "https://[::1]:9100/metrics?x=1"),
    (("http", "https"), "http://localhost/stats", "http://localhost/stats"),
])
def test_urls(schemes, value, url):
    assert URL(*schemes).convert(value, "x", Errors(), None) == url


@pytest.mark.parametrize("schemes, value, message", [
    (("http", "https"), "127.0.0.1:8080/x",
     "expected a URL like http://host:port/path, got the string '127.0.0.1:8080/x'"
     " (did you mean 'http://127.0.0.1:8080/x'?)"),
    (("unix", "tcp", "http"), "127.0.0.1:9191",
     "expected a URL like unix:///path.sock, /path.sock, tcp://host:port or http://host:port/path,"
     " got the string '127.0.0.1:9191' (did you mean 'tcp://127.0.0.1:9191'?)"),
    (("unix", "tcp"), "unix://run/docker.sock", "(the socket path must be absolute)"),
    (("unix", "tcp"), "tcp://docker", "(tcp:// takes a host and a port, nothing more)"),
    (("http", "https"), "ftp://host/x", "(ftp:// is not one of http://, https://)"),
    (("http", "https"), "http://host:99999/", "(the port is not a number from 0 to 65535)"),
    (("http", "https"), "http:///metrics", "(no host)"),
    (("http", "https"), "/metrics", "got the string '/metrics'"),
    (("http", "https"), "", "got the string ''"),
    (("http", "https"), 9100, "got the number 9100"),
])
def test_bad_urls(schemes, value, message):
    with pytest.raises(Invalid) as e:
        URL(*schemes).convert(value, "x", Errors(), None)
    assert message in str(e.value)


@pytest.mark.parametrize("value", [42, 1.10, True, None, ["a"]])
def test_a_string_is_not_a_number(value):
    with pytest.raises(Invalid, match="expected a string, got"):
        Str().convert(value, "x", Errors(), None)


def test_where_a_bare_number_is_usual_it_is_taken_as_text():
    assert ListOf(Str(numbers=True)).convert(["sleep", 5, 0.5], "x", Errors(), None) == ["sleep", "5", "0.5"]
    with pytest.raises(Invalid):
        Str(numbers=True).convert(True, "x", Errors(), None)


def test_a_number_from_an_expanded_variable_keeps_its_text():
    number = with_text(83, "0123")  # what YAML 1.1 makes of an unquoted 0123
    assert Str().convert(number, "x", Errors(), None) == "0123"
    assert Int().convert(number, "x", Errors(), None) == 83
