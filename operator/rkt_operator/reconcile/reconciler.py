"""The level-based reconcile of one task, and its finalization (controller-runtime style).

``Reconciler.reconcile(body)`` reads the object and what rkt reports, asks the pure decision
(``reconcile.plan``) what to do, applies it through the executor, and writes the status only
when it changed. It is idempotent: create, resume, update and the node's resync loop all call
it, one call at a time per task (a per-task lock). Errors are not raised: they come back in
``Outcome.error`` after the status tells the story, and ``rkt_operator.handlers`` maps them
to kopf's retry semantics. This module does not import kopf; events to post are returned.

One pass goes down the layers and back once; the numbered steps in ``_reconcile``:

1. acknowledge a new generation (the first status write: Reconciling, observedGeneration);
2. observe once (``taskstate.Observed``): the status, the task's pods from the shared
   ``rkt list`` (a pod missing from it that the status names is asked about before it may
   be called lost), the probes' liveness verdicts;
3. decide once (``plan.decide``: a ``Decision`` value);
4. apply it through the executor (stop, remove, stop an unhealthy pod, start: resolve env,
   prepare, launch, discover), giving a ``taskstate.Applied`` value;
5. report from the decision and what was applied (``taskstate.reported`` and ``describe``),
   never by deciding again: a started pod that is not running yet is looked at next pass.

``probe`` runs the probes that are due (``rkt_operator.reconcile.prober``) and reconciles
again when a verdict changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rkt_operator import errors
from rkt_operator.executor import logrotate
from rkt_operator.executor.service import Executor
from rkt_operator.model.logs import LogConfig
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.reconcile import plan, taskstate
from rkt_operator.reconcile import status as c
from rkt_operator.reconcile.applying import Applier
from rkt_operator.reconcile.podcache import PodCache
from rkt_operator.reconcile.probeplan import Verdict
from rkt_operator.reconcile.prober import Prober
from rkt_operator.reconcile.statuswriter import Event, Outcome, StatusApi, StatusWriter
from rkt_operator.reconcile.taskstate import Task
from rkt_operator.rkt.types import PodObservation
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        *,
        settings: Settings,
        executor: Executor,
        api: StatusApi,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.api = api
        self.now = clock or (lambda: datetime.now(UTC))
        self.pods = PodCache(executor, max_age=settings.resync_interval_seconds / 2)
        self.status = StatusWriter(api=api, node_name=settings.node_name, clock=self.now)
        self.prober = Prober(executor, clock=self.now)
        self._locks: dict[str, asyncio.Lock] = {}
        self._steps: dict[str, int] = {}
        # uid -> what the last pass reported from, when that pass changed nothing
        self._quiet: dict[str, tuple[object, ...]] = {}
        self.applier = Applier(
            settings=settings,
            executor=executor,
            api=api,
            pods=self.pods,
            status=self.status,
            prober=self.prober,
        )

    # -- entry points ------------------------------------------------------------------

    async def reconcile(
        self,
        body: Mapping[str, Any],
        *,
        logger: logging.Logger | logging.LoggerAdapter[Any] = log,
        live_update: bool = False,
    ) -> Outcome:
        """Bring the task's pod in line with its spec and report it. Never raises for
        problems of the task (see ``Outcome.error``)."""
        task = Task.from_body(body)
        out = Outcome()
        async with self._locks.setdefault(task.uid, asyncio.Lock()):
            status = self.status.freshest(task)
            try:
                await self._reconcile(task, status, out, logger, live_update=live_update)
            except errors.RktTaskError as exc:
                await self._report_error(task, self.status.freshest(task), exc, out, logger)
        return out

    async def probe(
        self,
        body: Mapping[str, Any],
        *,
        logger: logging.Logger | logging.LoggerAdapter[Any] = log,
    ) -> Outcome:
        """Run the task's probes that are due, outside the task's lock (a slow probe holds up
        no update or delete), and reconcile when a verdict changed. Probes are tracked for
        the pod a reconcile pass found running; until then there is nothing to run."""
        if not await self.prober.run_due(Task.from_body(body).uid):
            return Outcome()
        return await self.reconcile(body, logger=logger)

    async def finalize(
        self,
        body: Mapping[str, Any],
        *,
        logger: logging.Logger | logging.LoggerAdapter[Any] = log,
    ) -> Outcome:
        """The task is being deleted: stop its pods gracefully, remove them and its
        directories. Retryable failures come back in ``Outcome.error``."""
        task = Task.from_body(body)
        out = Outcome()
        grace = task.raw_kill_timeout()  # Executor.stop applies the node cap
        async with self._locks.setdefault(task.uid, asyncio.Lock()):
            try:
                self.pods.invalidate()
                pods = await self.executor.pods_for(task.uid)
                live = [p for p in pods if p.running or p.state == "prepared"]
                if live:
                    status = self.status.freshest(task)
                    summary = c.terminating(live[0].uuid)
                    facts = taskstate.facts_from_status(status)
                    await self.status.write(task, status, summary, facts, out, observe=False)
                for pod in pods:
                    if pod.running:
                        out.events.append(Event("Normal", "Stopping", f"stopping pod {pod.uuid}"))
                        logger.info("stopping pod uuid=%s kill_timeout=%s", pod.uuid, grace)
                    await self.executor.stop(pod.uuid, kill_timeout=grace)
                    await self.executor.remove(pod.uuid)
                await self.executor.cleanup(task.identity)
            except errors.RktTaskError as exc:
                logger.warning("cleanup failed, will retry: %s", exc)
                out.error = exc
                return out
            finally:
                self.pods.invalidate()
        self.forget(task.uid)
        out.events.append(Event("Normal", "Deleted", "pods and task directories removed"))
        return out

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self._steps.pop(uid, None)
        self._quiet.pop(uid, None)
        self.status.forget(uid)
        self.prober.forget(uid)

    # -- the reconcile -----------------------------------------------------------------

    async def _reconcile(
        self,
        task: Task,
        status: Mapping[str, Any],
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        live_update: bool,
    ) -> None:
        generation = task.generation
        if c.stalled_for(status, generation):
            return  # refused for good until the spec changes
        spec = taskstate.parse_spec(task)
        if spec.node_name != self.settings.node_name:
            logger.debug("task is bound to node %s, not this one", spec.node_name)
            return

        # 1. Acknowledge a new generation at once: Reconciling=True, observedGeneration.
        if c.needs_first_write(status, generation) and not live_update:
            replacing = status.get("observedGeneration") is not None
            self._steps[task.uid] = 0
            facts = replace(
                taskstate.facts_from_status(status),
                restarts=0,
                restart_events_posted=0,
                backoff=None,
            )
            summary = c.starting(
                "spec changed: replacing the pod" if replacing else "accepted by the node agent",
                replacing=replacing,
            )
            status = await self.status.write(task, status, summary, facts, out)

        # 2. Observe once: the status (read above), the task's pods, the probes' verdicts.
        seen = await self._observe(task, spec, status, live_update=live_update)

        # 3. Decide once.
        decision = plan.decide(
            generation=generation,
            policy=plan.RestartPolicy(spec.restart_policy),
            recorded=seen.recorded,
            pods=seen.pods,
            now=self.now(),
            backoff=seen.backoff,
            killed=seen.killed.keys(),
            unhealthy=seen.unhealthy.keys(),
        )
        logger.debug(
            "decision reason=%s state=%s actions=%s", decision.reason, decision.state,
            decision.actions,
        )  # fmt: skip

        # 4. Apply: stop and remove what must go, then start (or adopt and launch) the pod.
        try:
            applied, status = await self.applier.apply(
                task, status, spec, decision, seen, out, logger
            )
        except errors.RktTaskError as exc:
            if decision.start is None or not exc.retryable:
                raise
            await self._start_failed(task, spec, decision, seen, exc, out, logger)
            return

        # 5. Report what was applied (and keep the pod's log files within spec.logs).
        undecided = decision
        decision, pod = taskstate.reported(decision, seen, applied)
        self._steps[task.uid] = decision.backoff_step
        self._track_probes(task, spec, decision, pod, applied.pods_left(seen))
        if pod is not None:
            await self._tend_logs(task, spec, pod.uuid, logger)
        readiness: Verdict | None = None
        if spec.readiness_probe is not None and decision.pod_uuid:
            readiness = self.prober.readiness(task.uid, decision.pod_uuid)
        killed = self.prober.killed(task.uid).get(decision.pod_uuid or "")
        quiet = _quiet_key(task, spec, decision, pod, status, applied, live_update=live_update)
        if quiet is not None and self._quiet.get(task.uid) == quiet:
            return  # the same report as last pass, which changed nothing: skip building it
        summary, facts = taskstate.describe(
            decision,
            spec=spec,
            pod=pod,
            previous=status,
            backoff=seen.backoff,
            fresh_port_map=applied.started.port_map if applied.started else None,
            readiness=readiness,
            killed=killed,
            now=self.now(),
        )
        # A restart this pass made (not one adopted from a pod's stamp): its event names the
        # exit that caused it.
        start = undecided.start
        made = applied.started is not None and start is not None and start.restart
        facts = await self._announce_restarts(
            task, status, facts, out, logger, made=made, exit_code=undecided.exit_code
        )
        writes = out.writes
        await self.status.write(task, status, summary, facts, out)
        out.requeue_after = decision.requeue_after
        if quiet is not None and out.writes == writes and not out.events and out.error is None:
            self._quiet[task.uid] = quiet
        else:
            self._quiet.pop(task.uid, None)

    async def _announce_restarts(
        self,
        task: Task,
        status: Mapping[str, Any],
        facts: c.PodFacts,
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        made: bool = False,
        exit_code: int | None = None,
    ) -> c.PodFacts:
        """Post the ``Restarting`` event of each restart the status is about to record but
        not as announced (``plan.restart_events_due``), before the write that records it;
        returns ``facts`` with ``restartEventsPosted`` up to the last one posted. An event
        is named after its restart (``kubeapi.task_event``): one posted before an agent
        died is found again, not doubled. A post that fails leaves the rest owed to the next
        pass (at least once, never lost). ``made``: this pass made the latest restart (its
        exit code is ``exit_code``)."""
        before = taskstate.facts_from_status(status)
        due = plan.restart_events_due(
            facts.restarts, recorded_restarts=before.restarts, posted=before.restart_events_posted
        )
        posted = before.restart_events_posted
        if posted is not None:
            posted = min(posted, facts.restarts)
        for number in due:
            latest = number == facts.restarts
            message = taskstate.restart_message(
                number,
                pod_uuid=facts.uuid if latest else None,
                exit_code=exit_code if latest and made else None,
                late=not (latest and made),
            )
            try:
                created = await self.api.post_task_event(
                    task.body,
                    key=f"restart/{task.generation}/{number}",
                    type_="Normal",
                    reason="Restarting",
                    message=message,
                    instance=self.settings.node_name,
                    now=self.now(),
                )
            except errors.EventNotPosted as exc:
                logger.warning(
                    "restart event not posted, the next pass tries again: restart=%d %s",
                    number, exc,
                )  # fmt: skip
                break
            if created:
                out.events.append(Event("Normal", "Restarting", message, posted=True))
            posted = number
        return replace(facts, restart_events_posted=posted)

    async def _observe(
        self, task: Task, spec: RktTaskSpec, status: Mapping[str, Any], *, live_update: bool
    ) -> taskstate.Observed:
        """What the decision needs, each read once. A pod the status names as running that
        the (possibly cached) ``rkt list`` lacks is asked about with ``rkt status`` before
        the decision may call it lost."""
        generation = task.generation
        accepted = status.get("uuid") if live_update else c.settled_uuid(status, generation)
        recorded = taskstate.recorded_from(
            status, accepted_uuid=accepted if isinstance(accepted, str) else None
        )
        pods = await self.pods.pods_for(task.uid)
        named = recorded.uuid
        if (
            named
            and recorded.state is plan.State.RUNNING
            and recorded.generation == generation
            and all(p.uuid != named for p in pods)
            and await self.executor.observe(named) is not None
        ):
            self.pods.invalidate()
            pods = await self.pods.pods_for(task.uid)
        unhealthy: dict[str, Verdict] = {}
        if spec.liveness_probe is not None:
            for pod in pods:
                failure = self.prober.liveness_failure(task.uid, pod.uuid) if pod.running else None
                if failure is not None:
                    unhealthy[pod.uuid] = failure
        return taskstate.Observed(
            recorded=recorded,
            backoff=self._backoff(task.uid, recorded),
            pods=tuple(pods),
            killed=self.prober.killed(task.uid),
            unhealthy=unhealthy,
        )

    def _track_probes(
        self,
        task: Task,
        spec: RktTaskSpec,
        decision: plan.Decision,
        pod: PodObservation | None,
        pods: list[PodObservation],
    ) -> None:
        """Probe the task's running pod (none otherwise); forget pods rkt no longer lists."""
        if decision.state is plan.State.RUNNING and pod is not None and pod.running:
            self.prober.watch(task.uid, pod.uuid, spec, pod.started_at)
        else:
            self.prober.unwatch(task.uid)
        self.prober.retain(task.uid, [p.uuid for p in pods])

    async def _tend_logs(
        self,
        task: Task,
        spec: RktTaskSpec,
        uuid: str,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        logs = spec.logs or LogConfig()
        limits = logrotate.LogLimits(logs.max_files, logs.max_file_bytes)
        try:
            await self.executor.logs.tend(task.identity, uuid, limits)
        except OSError as exc:
            logger.warning("cannot rotate the log files of pod %s: %s", uuid, exc)

    def _backoff(self, uid: str, recorded: plan.Recorded) -> plan.Backoff:
        # The step lives in memory, as the kubelet's back-off does; after an agent restart
        # the restart count stands in for it (never shorter than the real one).
        step = self._steps.get(uid, recorded.restarts)
        return plan.Backoff(
            self.settings.restart_backoff_seconds,
            self.settings.restart_backoff_max_seconds,
            step=step,
        )

    async def _start_failed(
        self,
        task: Task,
        spec: RktTaskSpec,
        decision: plan.Decision,
        seen: taskstate.Observed,
        exc: errors.RktTaskError,
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        """A start failed for a cause that can heal: record one more failed start, say why
        and when the next try is (the restart back-off; Stalled past the progress deadline).
        The resync passes try again once it is due (``plan.decide``)."""
        out.error = exc
        status = self.status.freshest(task)  # the UUID may have been recorded meanwhile
        facts = taskstate.facts_from_status(status)
        message = getattr(exc, "message", None) or str(exc)
        now = self.now()
        # A restart whose pod was never recorded is still to be counted.
        restart = plan.restart_to_count(decision, facts.restarts)
        failure = plan.start_failed(
            decision.start_failure, reason=exc.reason, message=message, now=now, restart=restart
        )
        summary, recorded = taskstate.start_failing(
            failure, spec=spec, backoff=seen.backoff, now=now
        )
        logger.warning(
            "start failed, retrying: reason=%s attempts=%d next_try=%s %s",
            exc.reason, failure.attempts, c.format_time(failure.retry_at(seen.backoff)), message,
        )  # fmt: skip
        # The restart was tried: no longer in back-off (a failed restart is retried as one).
        facts = replace(facts, start_failure=recorded, backoff=None)
        facts = await self._announce_restarts(task, status, facts, out, logger)
        await self.status.write(task, status, summary, facts, out)
        out.requeue_after = (failure.retry_at(seen.backoff) - now).total_seconds()

    async def _report_error(
        self,
        task: Task,
        status: Mapping[str, Any],
        exc: errors.RktTaskError,
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        out.error = exc
        message = getattr(exc, "message", None) or str(exc)
        facts = taskstate.facts_from_status(status)
        if not exc.retryable:
            logger.error("task refused: reason=%s %s", exc.reason, message)
            field_name = exc.field if isinstance(exc, errors.SpecError) else None
            summary = c.stalled(exc.reason, message, field=field_name)
            await self.status.write(task, status, summary, replace(facts, ip=None), out)
            return
        logger.warning("task held back: reason=%s %s", exc.reason, message)
        if status.get("phase") == c.RUNNING and not isinstance(exc, errors.DependencyError):
            return  # the pod runs; a failed observation is no news for the status
        if taskstate.recorded_from(status, accepted_uuid=None).state is plan.State.BACKOFF:
            # CrashLoopBackOff is what the next pass restarts (and counts) from: overwritten
            # by this reason, the exit would be forgotten and the restart made as a first
            # start, uncounted (found by the chaos test: a garbled `rkt list` in back-off).
            return
        await self.status.write(task, status, c.waiting(exc.reason, message), facts, out)


def _quiet_key(
    task: Task,
    spec: RktTaskSpec,
    decision: plan.Decision,
    pod: PodObservation | None,
    status: Mapping[str, Any],
    applied: taskstate.Applied,
    *,
    live_update: bool,
) -> tuple[object, ...] | None:
    """What a pass's report is built from, when nothing but these can change it: the object's
    version, the decision (``plan.decide`` takes the clock, so whatever is due shows up in it),
    the pod, the status. None when the pass acted, something is due later, or probe verdicts
    (which change without the pod changing) take part. Two passes with equal keys describe
    the same status: a resync of an unchanged task skips describing, building and validating
    it again (the idle resync of every task every few seconds). Never while a ``Restarting``
    event is owed (its post failed): the next pass must try it again."""
    if live_update or decision.actions or applied.started is not None:
        return None
    if decision.requeue_after is not None or decision.start_failure is not None:
        return None
    if spec.readiness_probe is not None or spec.liveness_probe is not None:
        return None
    recorded = taskstate.facts_from_status(status)
    owed = plan.restart_events_due(
        recorded.restarts, recorded_restarts=recorded.restarts,
        posted=recorded.restart_events_posted,
    )  # fmt: skip
    if owed:
        return None  # a Restarting event whose post failed: each pass tries it again
    return (task.resource_version, task.generation, decision, pod, dict(status))
