"""Running a task's readiness and liveness probes, and remembering where they stand.

The state lives in memory, per task uid and pod UUID (an agent restart starts every probe
from scratch, as a kubelet restart does). The reconcile pass says which pod runs with which
probes (``watch``) and reads the verdicts back (``readiness``, ``liveness_failure``); the
agent's resync loop calls ``run_due`` once a second, which runs the probes that are due
through the executor (``rkt enter``, outside the task's reconcile lock) and says whether a
verdict changed, in which case the caller reconciles the task again. Pods stopped because
their liveness probe failed are remembered (``mark_killed``) so that their exit counts as
a failure, until rkt no longer lists them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rkt_operator import errors
from rkt_operator.executor.service import Executor
from rkt_operator.model.probes import Probe
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.reconcile import probeplan
from rkt_operator.reconcile.probeplan import Kind, Result, Track, Verdict

log = logging.getLogger(__name__)

# rkt enter processes in flight at once on one node.
MAX_CONCURRENT_PROBES = 8


@dataclass
class _PodProbes:
    uuid: str
    tracks: dict[Kind, Track] = field(default_factory=dict)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Prober:
    def __init__(self, executor: Executor, *, clock: Callable[[], datetime]) -> None:
        self.executor = executor
        self.now = clock
        self._pods: dict[str, _PodProbes] = {}
        self._killed: dict[str, dict[str, Verdict]] = {}
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_PROBES)

    # -- what the reconcile pass tells and asks --------------------------------------------

    def watch(self, uid: str, uuid: str, spec: RktTaskSpec, started_at: datetime | None) -> None:
        """Pod ``uuid`` is the task's running pod: track the spec's probes for it (a probe
        whose definition changed keeps its verdict; another pod's tracks are dropped)."""
        now = self.now()
        entry = self._pods.get(uid)
        if entry is None or entry.uuid != uuid:
            entry = self._pods[uid] = _PodProbes(uuid)
        wanted: dict[Kind, Probe | None] = {
            Kind.READINESS: spec.readiness_probe,
            Kind.LIVENESS: spec.liveness_probe,
        }
        for kind, probe in wanted.items():
            track = entry.tracks.get(kind)
            if probe is None:
                entry.tracks.pop(kind, None)
            elif track is None:
                entry.tracks[kind] = probeplan.start(kind, probe, _aware(started_at or now))
            else:
                entry.tracks[kind] = probeplan.retune(track, probe, now)

    def unwatch(self, uid: str) -> None:
        """The task has no running pod: nothing to probe."""
        self._pods.pop(uid, None)

    def readiness(self, uid: str, uuid: str) -> Verdict:
        """The readiness verdict for the pod (no verdict when nothing was tracked yet)."""
        entry = self._pods.get(uid)
        track = entry.tracks.get(Kind.READINESS) if entry and entry.uuid == uuid else None
        return track.verdict if track else Verdict(None)

    def liveness_failure(self, uid: str, uuid: str) -> Verdict | None:
        """The failed liveness verdict of the pod, if its liveness probe failed."""
        entry = self._pods.get(uid)
        track = entry.tracks.get(Kind.LIVENESS) if entry and entry.uuid == uuid else None
        return track.verdict if track and track.verdict.ok is False else None

    def mark_killed(self, uid: str, uuid: str, verdict: Verdict) -> None:
        self._killed.setdefault(uid, {})[uuid] = verdict

    def killed(self, uid: str) -> dict[str, Verdict]:
        """Pods of the task stopped for failing their liveness probe, by UUID."""
        return dict(self._killed.get(uid, {}))

    def retain(self, uid: str, uuids: Collection[str]) -> None:
        """Forget the stopped pods rkt no longer lists."""
        killed = self._killed.get(uid)
        if killed is None:
            return
        for uuid in [u for u in killed if u not in uuids]:
            del killed[uuid]
        if not killed:
            del self._killed[uid]

    def forget(self, uid: str) -> None:
        self._pods.pop(uid, None)
        self._killed.pop(uid, None)

    # -- running the probes ----------------------------------------------------------------

    async def run_due(self, uid: str) -> bool:
        """Run the task's probes that are due; True when a verdict changed."""
        entry = self._pods.get(uid)
        if entry is None:
            return False
        due = [t for t in entry.tracks.values() if probeplan.due(t, self.now())]
        results = await asyncio.gather(*(self._run(entry.uuid, t.probe) for t in due))
        changed = False
        now = self.now()
        for track, result in zip(due, results, strict=True):
            if self._pods.get(uid) is not entry or entry.tracks.get(track.kind) is not track:
                continue  # re-watched meanwhile (another pod, a new definition): drop it
            if result is None:
                entry.tracks[track.kind] = probeplan.skip(track, now)
                continue
            updated = probeplan.record(track, result, now)
            entry.tracks[track.kind] = updated
            if updated.verdict != track.verdict:
                changed = True
                log.info(
                    "%s probe verdict uid=%s uuid=%s ok=%s detail=%s",
                    track.kind, uid, entry.uuid, updated.verdict.ok, updated.verdict.detail,
                )  # fmt: skip
        return changed

    async def _run(self, uuid: str, probe: Probe) -> Result | None:
        """One run of the probe's command; None when no result could be had (the pod is
        gone or stopped, which the reconcile sees by itself, or rkt failed)."""
        timeout = float(probe.timeout_seconds)
        async with self._slots:
            try:
                done = await self.executor.exec(uuid, probe.exec_.command, deadline=timeout)
            except errors.RktTimeout:
                return probeplan.timed_out(timeout)
            except (errors.PodNotFound, errors.PodWrongState):
                return None
            except errors.RktError as exc:
                log.warning("probe could not run uuid=%s: %s", uuid, exc)
                return None
        return probeplan.describe_run(done.exit_code, done.output)
