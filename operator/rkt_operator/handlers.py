"""Thin kopf handlers: each reads the agent from ``memo``, calls the one level-based
``Reconciler`` (create, resume, update) or its ``finalize`` (delete), posts the events it
returns, counts its error (``rktoperator_reconcile_errors_total``), and maps the error to
kopf's retry semantics in one place (``raise_for``). Between changes, one loop for the whole
node (``NodeLoop``, fed by the ``track`` event handler) runs the periodic resync and
probe passes. Registration (resources, filters, intervals) is in ``rkt_operator.kopfapp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from rkt_operator import errors, kubeapi, memtrim
from rkt_operator.metrics.collector import AgentMetrics
from rkt_operator.reconcile import taskstate
from rkt_operator.reconcile.reconciler import Reconciler
from rkt_operator.reconcile.schedule import Pass, Schedule
from rkt_operator.reconcile.statuswriter import Outcome
from rkt_operator.settings import Settings

Logger = logging.Logger | logging.LoggerAdapter[Any]
log = logging.getLogger(__name__)


class MemoryDiffBase(kopf.DiffBaseStorage):
    """kopf's record of the last handled essence of each task (what its change detection
    diffs against), kept in the agent's memory instead of an annotation on the object: one
    API write less per handled change. After an agent restart nothing is remembered, so
    kopf sees each task as new and calls the create handler, which is the same level-based
    reconcile as resume (a spec changed while the agent was away is found from
    ``observedGeneration`` either way). The essence leaves out the annotation an older agent
    kept it in."""

    def __init__(self, *, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self._essences: dict[str, kopf.BodyEssence] = {}
        # uid -> (resourceVersion, the essence it was compared with, whether they matched)
        self._compared: dict[str, tuple[str, kopf.BodyEssence, bool]] = {}

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """kopf's essence without the agent's own bookkeeping annotations (``prefix/``:
        kopf's progress records, an older agent's diff-base), as kopf leaves them out once
        its marker annotation is on the object (``UnmarkedProgress`` writes no marker).

        kopf's build deep-copies the whole object and then drops ``status`` and all
        metadata but labels and annotations; it gets here only what it keeps (the same
        essence), because the copy of ``managedFields`` and ``status`` was the largest CPU
        cost of a resync pass (``caught_up``) and of every watch event."""
        extras = list(extra_fields or ())
        if not any(_field_root(f) in ("metadata", "status") for f in extras):
            body = kopf.Body(cast(kopf.RawBody, _essential_parts(body)))
        essence = super().build(body=body, extra_fields=extras)
        annotations = essence.get("metadata", {}).get("annotations")
        if isinstance(annotations, dict):
            for key in [k for k in annotations if k.startswith(f"{self.prefix}/")]:
                del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self._essences.get(str(body.metadata.uid))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._essences[str(body.metadata.uid)] = essence

    def forget(self, uid: str) -> None:
        self._essences.pop(uid, None)
        self._compared.pop(uid, None)

    def handled(self, body: kopf.Body) -> bool:
        """Whether the essence kopf last handled is this body's. The answer is kept per
        task for the body's resourceVersion and the stored essence: the resync loop asks
        every few seconds, and the object has mostly not changed since it last asked."""
        uid = str(body.metadata.uid)
        stored = self._essences.get(uid)
        if stored is None:
            return False
        version = str(body.metadata.get("resourceVersion") or "")
        known = self._compared.get(uid)
        if version and known is not None and known[0] == version and known[1] is stored:
            return known[2]
        same = stored == self.build(body=body)
        if version:
            self._compared[uid] = (version, stored, same)
        return same

    def __len__(self) -> int:
        return len(self._essences)


def _without_managed_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without ``metadata.managedFields`` (not copied deeper): the server-side
    apply bookkeeping is about 60% of a task's parsed size (11 of 18.5 KiB) and no pass
    reads it, so the resync loop does not keep it for each of the node's tasks."""
    meta = body.get("metadata")
    if not isinstance(meta, Mapping) or "managedFields" not in meta:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _field_root(spec: Any) -> str:
    """The first key of a kopf field spec (``"a.b"`` or a sequence of keys)."""
    if isinstance(spec, str):
        return spec.split(".", 1)[0]
    return str(next(iter(spec), ""))


def _essential_parts(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what kopf's essence drops (``status``, metadata but labels and
    annotations), not copied: kopf's build copies what it keeps."""
    parts = {k: v for k, v in body.items() if k not in ("metadata", "status")}
    meta = body.get("metadata")
    if isinstance(meta, Mapping):
        parts["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
    return parts


class UnmarkedProgress(kopf.AnnotationsProgressStorage):
    """kopf's progress records in annotations under ``prefix/``, as kopf keeps them, but
    without its ``prefix/kopf-managed`` marker: kopf stores and purges a record for every
    handled change, so the marker, which is never purged, was a write of its own on every
    new task. (The marker tells other kopf-based operators to ignore these annotations;
    this agent's diff-base ignores them by prefix, see ``MemoryDiffBase.build``.)"""

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        super().store(key=key, record=record, body=body, patch=patch)
        marker = f"{self.prefix}/kopf-managed"
        if marker not in body.metadata.annotations:
            patch.metadata.annotations.pop(marker, None)


@dataclass
class Agent:
    """What the handlers need, created once at start-up and kept in kopf's ``memo``."""

    settings: Settings
    reconciler: Reconciler
    diffbase: kopf.DiffBaseStorage
    metrics: AgentMetrics | None = None
    # The change handlers begun and in flight (with the starts: when a burst is over).
    changes: memtrim.Activity = field(default_factory=memtrim.Activity)

    def done(self, body: kopf.Body, outcome: Outcome) -> None:
        """Post the outcome's events (kopf's queue: inside a handler) and count its error."""
        post(body, outcome)
        self.count(outcome)

    def count(self, outcome: Outcome) -> None:
        """Count the outcome's error (once per reconcile pass)."""
        if outcome.error is not None and self.metrics is not None:
            self.metrics.count_error(outcome.error.reason)


def retry_delay(settings: Settings, retry: int) -> float:
    """Exponential back-off for retried handlers: the restart back-off's base, doubling
    per attempt, capped by its maximum."""
    step = min(max(retry, 0), 32)
    return float(
        min(settings.restart_backoff_seconds * 2.0**step, settings.restart_backoff_max_seconds)
    )


def raise_for(error: errors.RktTaskError | None, *, settings: Settings, retry: int) -> None:
    """The one mapping from our errors to kopf's: not retryable (invalid spec, mapped ports
    without an address) -> ``PermanentError``; retryable (missing Secret, rkt failing or
    refusing a prepare, network not found) -> ``TemporaryError`` with exponential back-off.
    The status and an event already say what happened; a failed start's next try is
    decided by the reconciler's back-off (``plan.StartFailure``), whoever calls it."""
    if error is None:
        return
    message = f"{error.reason}: {getattr(error, 'message', None) or error}"
    if not error.retryable:
        raise kopf.PermanentError(message) from error
    raise kopf.TemporaryError(message, delay=retry_delay(settings, retry)) from error


# The one prefix of a handler's temporary failure during an API outage; the agent's log
# filter (``kopfapp.OutageFilter``) shows such failures as warnings.
API_UNAVAILABLE = "API unavailable"

Handler = Callable[..., Awaitable[None]]


def quiet_outages(handler: Handler) -> Handler:
    """An API connection error inside ``handler`` becomes one ``TemporaryError`` naming what
    failed (kopf retries the handler and logs one line for the object), not an unexpected
    exception with a traceback."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            await handler(*args, **kwargs)
        except (kopf.TemporaryError, kopf.PermanentError):
            raise
        except Exception as exc:
            why = kubeapi.outage(exc)
            if why is None:
                raise
            memo = kwargs.get("memo")
            settings: Settings | None = getattr(getattr(memo, "agent", None), "settings", None)
            delay = retry_delay(settings, kwargs.get("retry", 0)) if settings else 10.0
            raise kopf.TemporaryError(f"{API_UNAVAILABLE}: {why}", delay=delay) from None

    return wrapper


def post(body: kopf.Body, outcome: Outcome) -> None:
    for event in outcome.events:
        if event.posted:  # the reconciler posted it already (a durable Restarting event)
            continue
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


@quiet_outages
async def reconcile(body: kopf.Body, memo: Any, logger: Logger, retry: int, **_: Any) -> None:
    """create / resume: make it so."""
    agent: Agent = memo.agent
    with agent.changes.track():
        outcome = await agent.reconciler.reconcile(body, logger=logger)
    agent.done(body, outcome)
    raise_for(outcome.error, settings=agent.settings, retry=retry)


@quiet_outages
async def update(
    body: kopf.Body,
    old: Any,
    new: Any,
    memo: Any,
    logger: Logger,
    retry: int,
    **_: Any,
) -> None:
    """update of ``spec``: a change of live fields alone (killTimeoutSeconds, the probes,
    logs) keeps the running pod."""
    agent: Agent = memo.agent
    live = isinstance(old, Mapping) and isinstance(new, Mapping)
    live = live and taskstate.live_only_change(old, new)
    with agent.changes.track():
        outcome = await agent.reconciler.reconcile(body, logger=logger, live_update=live)
    agent.done(body, outcome)
    raise_for(outcome.error, settings=agent.settings, retry=retry)


def caught_up(body: kopf.Body, diffbase: kopf.DiffBaseStorage) -> bool:
    """Whether kopf has handled the object's current essence (its change handlers are done).
    Until then the change handlers own the object and the resync loop stays out of their way."""
    if isinstance(diffbase, MemoryDiffBase):
        return diffbase.handled(body)
    return diffbase.fetch(body=body) == diffbase.build(body=body)


# The id of ``track``: kopf logs "Handler 'track' succeeded." on every watch event;
# ``logconfig.RoutineFilter`` drops that line.
TRACK_ID = "track"


def track(body: kopf.Body, type: str | None, memo: Any, **_: Any) -> None:
    """kopf event handler (every watch event of the node's tasks, before any change handler
    runs): keeps the latest body of each task for the node's resync loop (``NodeLoop``).
    An event handler, not a kopf index: kopf holds every change handler back until its
    indexes have seen the whole initial listing, which delayed the re-confirmation of
    1,000 tasks after an agent restart by about 5 s."""
    node_loop: NodeLoop | None = getattr(memo, "node_loop", None)
    if node_loop is not None:
        node_loop.observe(type, body)


async def post_via_api(agent: Agent, body: kopf.Body, outcome: Outcome) -> None:
    """Post the outcome's events through the agent's own API client (outside kopf's
    handlers there is no kopf event queue). A post that fails is logged and dropped, as
    kopf drops one."""
    for event in outcome.events:
        if event.posted:
            continue
        try:
            await agent.reconciler.api.post_task_event(
                body,
                key=f"{event.reason}.{uuid.uuid4().hex}",
                type_=event.type,
                reason=event.reason,
                message=event.message,
                instance=agent.settings.node_name,
                now=datetime.now(UTC),
            )
        except errors.EventNotPosted as exc:
            log.warning("event %s not posted: %s", event.reason, exc)


class NodeLoop:
    """One loop for every task of the node instead of a kopf timer per task (whose
    machinery cost about a millisecond per tick, task or no work): each tick (a second) it
    walks the node's tasks (their latest bodies, from ``track``) and runs the passes that are due
    (``reconcile.schedule``): a resync (observe the pod through the shared ``rkt list``,
    write only on change) every resync interval or sooner when a back-off falls due, and a
    probe pass for tasks with probes. A task whose latest change kopf has not handled yet
    is left to its change handlers (``caught_up``), and one being deleted to its delete
    handler. Started and stopped with each kopf run, whose watch feeds it."""

    def __init__(
        self,
        agent: Agent,
        *,
        kopf_settings: kopf.OperatorSettings,
        tick: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self.tasks: dict[str, kopf.Body] = {}
        self.kopf_settings = kopf_settings
        self.tick = tick
        self.clock = clock
        self.schedule = Schedule(interval=agent.settings.resync_interval_seconds, min_delay=tick)
        self._passes: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self.trim = memtrim.TrimPolicy()

    def observe(self, event_type: str | None, body: kopf.Body) -> None:
        """A watch event of a task: its latest body, or it is gone."""
        uid = str(body.metadata.uid)
        if event_type == "DELETED":
            self.tasks.pop(uid, None)
        elif body.spec.get("nodeName") == self.agent.settings.node_name:
            self.tasks[uid] = kopf.Body(cast(kopf.RawBody, _without_managed_fields(body)))
        else:  # not this node's (never sent by the server-side selector)
            self.tasks.pop(uid, None)

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="node resync loop")

    async def stop(self, grace: float = 10.0) -> None:
        """Start no pass; let the running ones end within ``grace`` seconds, then cancel."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._passes:
            _, pending = await asyncio.wait(set(self._passes), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _run(self) -> None:
        while True:
            try:
                self.run_due()
                await self.trim_if_due()
            except Exception:  # the loop must outlive any one bad tick
                log.exception("resync loop tick failed")
            await asyncio.sleep(self.tick)

    async def trim_if_due(self) -> bool:
        """After a burst of changes or starts, give its memory back (``memtrim``); ``True``
        if done."""
        changes, starts = self.agent.changes, self.agent.reconciler.applier.starts
        # A create handler's start counts in both: the sum is work done, not tasks.
        begun = changes.begun + starts.begun
        if not self.trim.due(
            self.clock(), begun=begun, in_flight=changes.in_flight + starts.in_flight
        ):
            return False
        done = await memtrim.release()
        log.info(
            "burst over, memory given back: changes=%d starts=%d rss_before_mib=%.1f "
            "rss_after_mib=%.1f trimmed=%s",
            changes.begun,
            starts.begun,
            done.rss_before / memtrim.MIB,
            done.rss_after / memtrim.MIB,
            done.trimmed,
        )
        return True

    def run_due(self) -> int:
        """Start the passes due now; returns how many were started."""
        now = self.clock()
        self.schedule.keep_only(self.tasks.keys())
        started = 0
        for uid, body in self.tasks.items():
            if body.metadata.get("deletionTimestamp"):
                continue
            spec = body.spec
            probed = bool(spec.get("readinessProbe") or spec.get("livenessProbe"))
            kind = self.schedule.next_pass(uid, now, probed=probed)
            if kind is None:
                continue
            task = asyncio.create_task(self._pass(body, uid, kind))
            self._passes.add(task)
            task.add_done_callback(self._passes.discard)
            started += 1
        return started

    async def _pass(self, body: kopf.Body, uid: str, kind: Pass) -> None:
        requeue: float | None = None
        logger = kopf.ObjectLogger(body=body, settings=self.kopf_settings)
        try:
            if caught_up(body, self.agent.diffbase):
                requeue = await self._run_pass(body, kind, logger)
        except Exception as exc:  # one task's failure is its own
            why = kubeapi.outage(exc)
            if why is None:
                logger.exception("%s pass failed", kind.value)
            else:
                logger.warning(
                    "%s pass failed temporarily: %s: %s", kind.value, API_UNAVAILABLE, why
                )
        finally:
            self.schedule.finished(uid, kind, self.clock(), requeue)

    async def _run_pass(self, body: kopf.Body, kind: Pass, logger: Logger) -> float | None:
        agent = self.agent
        if kind is Pass.PROBE:
            outcome = await agent.reconciler.probe(body, logger=logger)
        else:
            outcome = await agent.reconciler.reconcile(body, logger=logger)
            agent.count(outcome)
            logger.debug("resync pass done writes=%d", outcome.writes)
        await post_via_api(agent, body, outcome)
        if outcome.error is not None:
            logger.debug("%s: %s", kind.value, outcome.error)
        return outcome.requeue_after


@quiet_outages
async def delete(body: kopf.Body, memo: Any, logger: Logger, retry: int, **_: Any) -> None:
    """Graceful stop within the kill timeout, rkt rm, task directories removed; kopf then
    drops the finalizer."""
    agent: Agent = memo.agent
    with agent.changes.track():
        outcome = await agent.reconciler.finalize(body, logger=logger)
    agent.done(body, outcome)
    if outcome.error is None and isinstance(agent.diffbase, MemoryDiffBase):
        agent.diffbase.forget(str(body.metadata.uid))
    if outcome.error is not None:
        # Never give up on a delete: a permanent error would leave the pod running.
        raise kopf.TemporaryError(
            f"{outcome.error.reason}: {outcome.error}",
            delay=retry_delay(agent.settings, retry),
        ) from outcome.error
