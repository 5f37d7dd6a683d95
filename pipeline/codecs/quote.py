"""What a peer or a record holds, shown safely in one log line or error record: quoted,
control characters escaped, cut to a few hundred characters however large or deep it is."""

from __future__ import annotations

import reprlib
from typing import Any

#: a sample of bad input in a log line or error event is cut to this many characters
SAMPLE_CHARS = 200


#: a record of any depth or size, shown in a few hundred characters without recursing far
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 4, 12, 12, 80, 80
_REPR.maxlong = 40


def safe_text(data: Any) -> str:
    """Any value as writable text (bytes and strings cut, objects by a bounded repr)."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data[: SAMPLE_CHARS * 4]).decode("utf-8", "backslashreplace")
    if isinstance(data, str):
        text = data
    else:
        try:
            text = _REPR.repr(data)
        except Exception:  # a foreign object whose repr fails: its type must do
            text = f"<{type(data).__name__}>"
    # lone surrogates (invalid UTF-8 decoded with surrogateescape) escaped: the sample of a
    # record no sink could write must itself be writable
    return text.encode("utf-8", "backslashreplace").decode()


def sample(data: Any) -> str:
    text = safe_text(data)
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "..."


def quoted(data: Any, *, end: bool = False) -> str:
    """What a peer sent, safe for one log line: repr-quoted (line breaks and control
    characters escaped), cut to SAMPLE_CHARS; `end` keeps the last ones (a stderr tail)."""
    if isinstance(data, (bytes, bytearray, str)):
        data = data[-SAMPLE_CHARS * 4:] if end else data[:SAMPLE_CHARS * 4]
        if not isinstance(data, str):
            data = bytes(data).decode("utf-8", "backslashreplace")
    text = repr(data) if isinstance(data, str) else safe_text(data)
    if len(text) <= SAMPLE_CHARS:
        return text
    return "..." + text[-SAMPLE_CHARS:] if end else text[:SAMPLE_CHARS] + "..."
