"""The agent's own liveness/readiness verdict: is it actually able to hear about its node's
tasks? (kopf's liveness endpoint only shows that its HTTP task is alive.)

Two pieces of evidence, both with a time stamp, judged against one bound
(``Settings.watch_stale_seconds``):

- **served**: kopf serves the RktTask resource, i.e. it resolved the resource and runs a
  watcher for it (``WatchHealth.served``, fed by the supervisor in ``kopfapp``). A
  resource that is not resolved at start-up (the API server was starting, the CRD was
  missing) is never looked up again by kopf with scanning off: that is a deaf agent.
- **listed**: a LIST of this node's tasks, with the same server-side selector as kopf's
  watch, succeeded recently (``WatchHealth.listed``, from a periodic check). It proves the
  API server answers, the resource exists, the selector is accepted and RBAC allows it.

Live (HTTP 200) iff both held within the bound; otherwise 503 with the reasons. When the
API answers but kopf has not served the resource for the bound, the supervisor restarts
kopf in-process (``should_restart``). This module knows nothing of kopf.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rkt_operator.httpserve import GetEndpoint
from rkt_operator.settings import split_http_endpoint

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def short_error(exc: BaseException) -> str:
    """``Type: first line`` of an exception (at most 200 characters of it), for logs."""
    lines = str(exc).strip().splitlines()
    first = lines[0][:200] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass
class WatchHealth:
    """What the agent knows about its watch of this node's tasks (monotonic seconds)."""

    bound: float
    clock: Clock = time.monotonic
    started_at: float = field(default=0.0)
    served_since: float | None = None
    unserved_since: float | None = None
    listed_at: float | None = None
    list_error: str | None = None
    restarts: int = 0

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        self.unserved_since = self.started_at

    def operator_started(self) -> None:
        """A (new) kopf operator run began: nothing is served yet."""
        now = self.clock()
        self.served_since, self.unserved_since = None, now

    def served(self, serving: bool) -> None:
        now = self.clock()
        if serving and self.served_since is None:
            self.served_since, self.unserved_since = now, None
        elif not serving and self.unserved_since is None:
            self.served_since, self.unserved_since = None, now

    def listed(self, error: str | None = None) -> None:
        """The result of one LIST of the node's tasks (``error`` None: it worked)."""
        if error is None:
            self.listed_at, self.list_error = self.clock(), None
        else:
            self.list_error = error

    def problems(self) -> list[str]:
        """Why the agent cannot be trusted to hear its tasks (empty: it can)."""
        now = self.clock()
        out = []
        if self.served_since is None:
            since = self.unserved_since if self.unserved_since is not None else self.started_at
            if now - since > self.bound:
                out.append(f"the RktTask resource has not been served for {now - since:.0f}s")
        last = self.listed_at if self.listed_at is not None else self.started_at
        if now - last > self.bound:
            why = f": {self.list_error}" if self.list_error else ""
            out.append(f"this node's tasks could not be listed for {now - last:.0f}s{why}")
        return out

    def should_restart(self) -> bool:
        """The API answers, yet kopf has not served the resource for longer than the bound:
        only a new operator run (a new resource lookup) can help."""
        now = self.clock()
        if self.served_since is not None or self.unserved_since is None:
            return False
        fresh_list = self.listed_at is not None and self.listed_at > self.unserved_since
        return fresh_list and now - self.unserved_since > self.bound

    def report(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "healthy": not self.problems(),
            "problems": self.problems(),
            "served_for_seconds": (
                round(now - self.served_since, 1) if self.served_since is not None else None
            ),
            "last_list_seconds_ago": (
                round(now - self.listed_at, 1) if self.listed_at is not None else None
            ),
            "bound_seconds": self.bound,
            "operator_restarts": self.restarts,
        }


Extra = Callable[[], Mapping[str, Any]]


class HealthServer(GetEndpoint):
    """``GET <path>``: 200 when ``health`` has no problem, else 503; the JSON body holds the
    watch verdict under ``watch`` and whatever ``extra()`` adds (the rkt fingerprint)."""

    def __init__(self, endpoint: str, health: WatchHealth, extra: Extra | None = None) -> None:
        super().__init__(*split_http_endpoint(endpoint), handler=self._handle)
        self.health = health
        self.extra = extra

    async def _handle(self, request: web.Request) -> web.Response:
        del request
        watch = self.health.report()
        body: dict[str, Any] = dict(self.extra() if self.extra is not None else {})
        body["watch"] = watch
        status = 200 if watch["healthy"] else 503
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")
