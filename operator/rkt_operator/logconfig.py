"""The agent's log set-up: JSON lines (kopf's formatter) or key=value text, and a filter that
drops kopf's line for every routine timer tick. Called once by ``cli`` before the agent runs.
"""

from __future__ import annotations

import json
import logging

import kopf


class KeyValueFormatter(logging.Formatter):
    """``time=... level=... logger=... object=ns/name msg="..."``: one line per record,
    the object only when kopf's per-object logger adds it."""

    def format(self, record: logging.LogRecord) -> str:
        ref = getattr(record, "k8s_ref", None)
        fields = [
            ("time", self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")),
            ("level", record.levelname),
            ("logger", record.name),
        ]
        if isinstance(ref, dict) and ref.get("name"):
            obj = f"{ref.get('namespace')}/{ref['name']}" if ref.get("namespace") else ref["name"]
            fields.append(("object", str(obj)))
        fields.append(("msg", record.getMessage()))
        line = " ".join(f"{k}={json.dumps(v) if _needs_quotes(v) else v}" for k, v in fields)
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


def _needs_quotes(value: str) -> bool:
    return not value or any(ch.isspace() or ch in '"=' for ch in value)


class RoutineFilter(logging.Filter):
    """Drops kopf's line for every successful resync or probe tick (one per task every few
    seconds, or every second): the timers' outcome is already visible in the status and
    events."""

    ROUTINE = frozenset({"Timer 'resync' succeeded.", "Timer 'probe' succeeded."})

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "kopf.objects"
            and record.levelno == logging.INFO
            and record.getMessage() in self.ROUTINE
        )


def setup_logging(log_format: str, level: str) -> None:
    """JSON lines (kopf's formatter, the object under "object") or key=value text."""
    if log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object")
    else:
        kopf.configure(log_format=kopf.LogFormat.PLAIN)
    for handler in logging.getLogger().handlers:
        if log_format != "json":
            handler.setFormatter(KeyValueFormatter())
        if level != "DEBUG":
            handler.addFilter(RoutineFilter())
    logging.getLogger().setLevel(level)
