"""Applying one reconcile decision through the executor (step 4 of a pass).

``Applier.apply`` carries out a ``plan.Decision``'s actions in order: stop and remove the
pods that must go, stop a pod whose liveness probe failed (keeping it, to show its exit),
then start or adopt the task's pod (resolve env, build the launch plan, ``rkt prepare``,
launch, discover; the pod is found again by the identity it carries, so no status is written
in between). It returns what it did as a
``taskstate.Applied`` value and the status now in force; it decides nothing itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from rkt_operator import envrefs, memtrim
from rkt_operator.executor.service import Executor
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.reconcile import plan, taskstate
from rkt_operator.reconcile.podcache import PodCache
from rkt_operator.reconcile.probeplan import Verdict
from rkt_operator.reconcile.prober import Prober
from rkt_operator.reconcile.statuswriter import Event, Outcome, StatusApi, StatusWriter
from rkt_operator.reconcile.taskstate import Task
from rkt_operator.rkt import argv
from rkt_operator.rkt.types import PodObservation, PodStamp, TaskDirs
from rkt_operator.settings import Settings

# Starts in flight at once on one node (each runs rkt prepare and a launcher).
MAX_CONCURRENT_STARTS = 8


class Applier:
    def __init__(
        self,
        *,
        settings: Settings,
        executor: Executor,
        api: StatusApi,
        pods: PodCache,
        status: StatusWriter,
        prober: Prober,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.api = api
        self.pods = pods
        self.status = status
        self.prober = prober
        self._starts = asyncio.Semaphore(MAX_CONCURRENT_STARTS)
        # Starts begun and in flight (for ``memtrim``: when a burst is over).
        self.starts = memtrim.Activity()

    async def apply(
        self,
        task: Task,
        status: Mapping[str, Any],
        spec: RktTaskSpec,
        decision: plan.Decision,
        seen: taskstate.Observed,
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> tuple[taskstate.Applied, Mapping[str, Any]]:
        """Carry out the decision's actions in order; returns what was done and the status
        now in force."""
        removed = await self._remove(decision, spec, out, logger)
        stopped = None
        for action in decision.actions:
            if isinstance(action, plan.StopPod) and action.reason is plan.Reason.STOP_UNHEALTHY:
                failure = seen.unhealthy[action.uuid]
                stopped = await self._stop_unhealthy(task, spec, action.uuid, failure, out, logger)
        start = decision.start
        if start is None:
            return taskstate.Applied(removed=removed, stopped=stopped), status
        # What the decision saw is still the truth unless a pod was removed or stopped here.
        listed = list(seen.pods) if not removed and stopped is None else None
        started, status = await self._start(
            task, status, spec, start, decision, out, logger, listed=listed
        )
        return taskstate.Applied(removed=removed, started=started, stopped=stopped), status

    async def _remove(
        self,
        decision: plan.Decision,
        spec: RktTaskSpec,
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> tuple[str, ...]:
        """Stop and remove the pods that must go; returns their UUIDs. (A pod stopped for
        a failed liveness probe stays, to show its exit: see ``_stop_unhealthy``.)"""
        grace = spec.kill_timeout_seconds  # Executor.stop applies the node cap
        removals = [
            a
            for a in decision.removals
            if not (isinstance(a, plan.StopPod) and a.reason is plan.Reason.STOP_UNHEALTHY)
        ]
        try:
            for action in removals:
                if isinstance(action, plan.StopPod):
                    why = {
                        plan.Reason.REPLACE_OUTDATED: "the spec changed",
                        plan.Reason.REMOVE_DUPLICATES: "another pod of the task is running",
                    }.get(action.reason, str(action.reason))
                    out.events.append(
                        Event("Normal", "Stopping", f"stopping pod {action.uuid}: {why}")
                    )
                    logger.info("stopping pod uuid=%s reason=%s", action.uuid, action.reason)
                    await self.executor.stop(action.uuid, kill_timeout=grace)
                else:
                    logger.info("removing pod uuid=%s reason=%s", action.uuid, action.reason)
                await self.executor.remove(action.uuid)
        finally:
            if removals:
                self.pods.invalidate()
        return tuple(a.uuid for a in removals)

    async def _stop_unhealthy(
        self,
        task: Task,
        spec: RktTaskSpec,
        uuid: str,
        failure: Verdict,
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> PodObservation | None:
        """Stop a pod whose liveness probe failed; returns it as rkt shows it afterwards."""
        grace = spec.kill_timeout_seconds  # Executor.stop applies the node cap
        message = f"Liveness probe failed: {failure.detail}; stopping pod {uuid}"
        out.events.append(Event("Warning", "Unhealthy", message))
        logger.warning("liveness probe failed, stopping pod uuid=%s: %s", uuid, failure.detail)
        self.prober.mark_killed(task.uid, uuid, failure)
        try:
            await self.executor.stop(uuid, kill_timeout=grace)
            return await self.executor.observe(uuid)
        finally:
            self.pods.invalidate()

    async def _start(
        self,
        task: Task,
        status: Mapping[str, Any],
        spec: RktTaskSpec,
        start: plan.StartPod,
        decision: plan.Decision,
        out: Outcome,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        listed: list[PodObservation] | None = None,
    ) -> tuple[PodObservation, Mapping[str, Any]]:
        """Start the pod. Returns the pod and the status now in force.
        ``listed``: the task's pods as the decision saw them, when still current (the
        executor then needs no ``rkt list`` of its own)."""
        env = await envrefs.resolve_env(spec.env, task.body, source=self.api)
        identity = task.identity
        dirs = TaskDirs.for_task(self.settings.task_root, identity)
        # The counts the pod starts with are stamped on it (read back by ``plan.decide``).
        stamp = PodStamp(restarts=decision.restarts, backoff_step=decision.backoff_step)
        launch = argv.build_launch_plan(
            spec, settings=self.settings, identity=identity, dirs=dirs, env=env, stamp=stamp
        )
        logger.info("starting pod generation=%s reason=%s", identity.generation, start.reason)
        # No status write between prepare and launch: the pod carries the task's identity
        # (uid, generation) in its rkt annotations, and the executor's start lock, start
        # marker and adoption find a prepared or launched pod again after an agent crash
        # (tests/agent/test_restarts.py kills the agent in prepare, run-prepared and status).
        # The pass's one write after the start names the pod; the restart count it carries
        # is stamped on the pod too (``stamp``), so a crash before that write loses nothing.
        with self.starts.track():
            async with self._starts:
                try:
                    started = await self.executor.ensure_started(launch, listed=listed)
                finally:
                    self.pods.invalidate()
        logger.info("pod started uuid=%s state=%s ip=%s", started.uuid, started.state, started.ip)
        return started, status
