"""The agent's log set-up: JSON lines (kopf's formatter) or key=value text, a filter that
turns API outages into one warning each, and one that drops kopf's line for every watch
event. Called once by ``cli`` before the agent runs.
"""

from __future__ import annotations

import json
import logging
import re

import aiohttp
import kopf
from kopf._cogs.clients.errors import APIError as KopfAPIError  # not exported by kopf

from rkt_operator import handlers, kubeapi
from rkt_operator.health import short_error


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
    """Drops kopf's line for every watch event the agent's event handler saw (``Handler
    'track' succeeded.``, one per event of every task): it says nothing the status does not."""

    ROUTINE = f"Handler '{handlers.TRACK_ID}' succeeded."

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "kopf.objects"
            and record.levelno == logging.INFO
            and record.msg == self.ROUTINE
        )


class OutageFilter(logging.Filter):
    """API outages as one warning per retry, without tracebacks (kopf logs its own request
    retries and failed watchers at ERROR, with the exception's full repr or traceback):

    - kopf's "Request attempt #N failed; will retry: GET url -> ClientConnectorError(...)"
      becomes "API request failed, will retry (attempt #N): GET url: ClientConnectorError";
    - a handler's temporary failure for an unavailable API (``handlers.quiet_outages``) is a
      warning (kopf's per-object logger names the object);
    - a kopf record carrying an API connection error or API error status (a failed watcher
      when the CRD is deleted) loses its traceback and becomes a warning; the supervisor
      (``kopfapp.supervise``) starts the operator again.
    """

    RETRY = re.compile(r"^Request attempt (#\S+) failed; will retry: (\S+ \S+) -> (\w+)")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kopf"):
            return True
        message = record.getMessage()
        match = self.RETRY.match(message)
        if match:
            record.msg = "API request failed, will retry (attempt %s): %s: %s"
            record.args = match.groups()
            _warning(record)
        elif f"failed temporarily: {handlers.API_UNAVAILABLE}" in message:
            _warning(record)
        elif record.exc_info and (exc := record.exc_info[1]) and _api_trouble(exc):
            record.msg, record.args = "%s (%s)", (message, short_error(exc))
            record.exc_info, record.exc_text = None, None
            _warning(record)
        return True


def _warning(record: logging.LogRecord) -> None:
    if record.levelno > logging.WARNING:
        record.levelno, record.levelname = logging.WARNING, "WARNING"


def _api_trouble(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, KopfAPIError | aiohttp.ClientError | ConnectionError | TimeoutError):
            return True
        if kubeapi.outage(exc) is not None:
            return True
        exc = exc.__cause__
    return False


def setup_logging(log_format: str, level: str) -> None:
    """JSON lines (kopf's formatter, the object under "object") or key=value text."""
    if log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object")
    else:
        kopf.configure(log_format=kopf.LogFormat.PLAIN)
    for handler in logging.getLogger().handlers:
        if log_format != "json":
            handler.setFormatter(KeyValueFormatter())
        handler.addFilter(OutageFilter())
        handler.addFilter(RoutineFilter())
    logging.getLogger().setLevel(level)
    # The Kubernetes client's urllib3 logs each of its internal connection retries; the
    # failure that matters is reported once by whoever made the call.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
