"""Go-compatible renderings: ``encoding/json`` output, time layouts and ``time.Duration``.

rkt is a Go program, so its JSON escapes ``<``, ``>`` and ``&`` (HTML-safe), ``MarshalIndent``
indents with the given string, times use the layout ``2006-01-02 15:04:05.999 -0700 MST``
and durations are written like ``30m0s``. Keeping these in one module keeps every output of
the simulator byte-compatible with rkt's.
"""

from __future__ import annotations

import json
import re
import time

TYPE_CHECKING = False  # typing costs rkt-sim start-up time: only the type checker imports it
if TYPE_CHECKING:
    from typing import Any

_GO_ESCAPES: tuple[tuple[str, str], ...] = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _go_escape(text: str) -> str:
    # These characters only ever occur inside JSON strings, so a global replace is exact.
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def dumps(value: Any) -> str:
    """``json.Marshal``: compact, UTF-8, HTML-escaped."""
    return _go_escape(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def dumps_indent(value: Any, indent: str = "\t") -> str:
    """``json.MarshalIndent(value, "", indent)``."""
    return _go_escape(json.dumps(value, indent=indent, ensure_ascii=False))


def format_time(ns: int) -> str:
    """Render Unix nanoseconds with rkt's text layout, in the local time zone.

    ``.999`` drops trailing zeros and the dot itself when the milliseconds are zero; Go
    truncates rather than rounds.
    """
    seconds, rest = divmod(ns, 1_000_000_000)
    local = time.localtime(seconds)
    millis = rest // 1_000_000
    frac = f".{millis:03d}".rstrip("0") if millis else ""
    frac = "" if frac == "." else frac
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", local)
    return f"{stamp}{frac} {time.strftime('%z %Z', local)}"


ZERO_TIME = "0001-01-01 00:00:00 +0000 UTC"

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# Compiled on first use (re caches it), not at import.
_DURATION_PART = r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)"


def parse_duration(text: str) -> int:
    """Parse a Go duration (``1h30m``, ``0.5s``, ``-1s``, ``0``) into nanoseconds."""
    original = text
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f"time: invalid duration {_quote(original)}")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = re.compile(_DURATION_PART).match(text, pos)
        if match is None or match.group(1) in ("", "."):
            if match is None and re.match(r"[0-9.]+$", text[pos:]):
                raise ValueError(f"time: missing unit in duration {_quote(original)}")
            raise ValueError(f"time: invalid duration {_quote(original)}")
        total += float(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
    return sign * round(total)


def format_duration(ns: int) -> str:
    """``time.Duration.String()``: ``0s``, ``1.5s``, ``30m0s``, ``24h0m0s``, ``100ms``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _fraction(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def _quote(text: str) -> str:
    """Go's ``%q`` for the strings rkt quotes (UUIDs, names, paths): a JSON string is close."""
    return json.dumps(text, ensure_ascii=False)


quote = _quote
