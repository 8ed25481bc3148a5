"""Text tables as rkt prints them: Go's tabwriter with TAB padding, humanized times and sizes."""

from __future__ import annotations

import time

TAB_WIDTH = 8


def tabwrite(rows: list[list[str]]) -> list[str]:
    """``tabwriter.NewWriter(w, 0, 8, 1, '\\t', 0)``: every column but the last padded with
    tabs to the column width (the widest cell plus one, rounded up to a multiple of 8)."""
    if not rows:
        return []
    columns = max(len(r) for r in rows)
    widths = [0] * columns
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell) + 1)
    widths = [-(-w // TAB_WIDTH) * TAB_WIDTH for w in widths]
    lines: list[str] = []
    for row in rows:
        parts = []
        for index, cell in enumerate(row):
            if index == len(row) - 1:
                parts.append(cell)
            else:
                tabs = max(1, -(-(widths[index] - len(cell)) // TAB_WIDTH))
                parts.append(cell + "\t" * tabs)
        lines.append("".join(parts))
    return lines


def humanize_ago(ns: int, now_ns: int | None = None) -> str:
    """go-humanize's ``Time``: ``now``, ``3 minutes ago``, ``1 day ago``..."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    delta = (now_ns - ns) / 1e9
    suffix = "ago" if delta >= 0 else "from now"
    delta = abs(delta)
    steps = (
        (1, "now", 1),
        (2, "1 second", 1),
        (60, "%d seconds", 1),
        (120, "1 minute", 1),
        (3600, "%d minutes", 60),
        (7200, "1 hour", 1),
        (86400, "%d hours", 3600),
        (172800, "1 day", 1),
        (604800, "%d days", 86400),
        (1209600, "1 week", 1),
        (2592000, "%d weeks", 604800),
        (5184000, "1 month", 1),
        (31536000, "%d months", 2592000),
        (47304000, "1 year", 1),
        (63072000, "2 years", 1),
    )
    for limit, text, divisor in steps:
        if delta < limit:
            if text == "now":
                return "now"
            label = text % (delta // divisor) if "%d" in text else text
            return f"{label} {suffix}"
    return f"{int(delta // 31536000)} years {suffix}"


def humanize_iec(size: int) -> str:
    """go-humanize's ``IBytes``: ``12 MiB``, ``1.5 KiB``, ``999 B``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024:
            text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
            return f"{text.removesuffix('.0')} {unit}"
    return f"{value:.0f} EiB"
