"""The node-local executor: the only executor surface the agent uses.

Starts pods so that they outlive the agent, observes, stops, removes and measures them. It
keeps no database: after a restart it finds its pods again from what rkt reports (every pod
is stamped with the task identity through ``--user-annotation``) plus the supervisor's exit
files, a cache that ``rkt status`` overrules. Starting is idempotent and crash-safe:

- a per-task start lock (``startlock``) serialises starts; its descriptor is inherited by
  ``rkt prepare``, so a prepare orphaned by a killed agent still holds it and the next agent
  waits for it instead of preparing a second pod;
- a prepared pod of the task is adopted, and launched only if no launch is under way
  (launch marker / systemd unit);
- the launch itself is claimed exclusively by the supervisor.

Size: the executor's one surface (start, observe, stop, remove, exec, stats); start and
adoption share the crash-safety argument above and are kept together for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rkt_operator import errors
from rkt_operator.executor import discovery, files, logkeeper, logrotate, startlock, stats
from rkt_operator.executor.launcher import Launcher
from rkt_operator.rkt import argv, pods
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.pods import PodStatus
from rkt_operator.rkt.types import (
    ANN_GENERATION,
    ANN_NAME,
    ANN_NAMESPACE,
    ANN_UID,
    LaunchPlan,
    PodObservation,
    PodStamp,
    TaskDirs,
    TaskIdentity,
)
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)

PodStats = stats.PodStats
FORCE_WAIT_SECONDS = 10.0  # after `rkt stop --force`, how long the pod may take to go
STARTING_WAIT_SECONDS = 30.0  # a running pod whose stage1 has not yet written its pid
# Real rkt's host stage1 loses a graceful stop that reaches a pod whose systemd is still
# booting: measured here (rkt 1.30, systemd 252), a `rkt stop` within about a second of the
# app coming up left the pod running in 2 of 8 tries (until --force) and ended it without
# the app's exit code in 2 more; 2 s later, 10 of 10 stops were graceful with exit code 0.
# A graceful stop therefore waits until the pod is this old, within the task's grace.
STAGE1_SETTLE_SECONDS = 3.0


@dataclass(frozen=True)
class _Live:
    """A live pod of the task being started, from a listing."""

    uuid: str
    state: str
    created_at: datetime | None


@dataclass(frozen=True)
class ExecResult:
    """A command run inside a pod: its exit code and the end of its merged output."""

    exit_code: int
    output: str


def identity_from(annotations: Mapping[str, str]) -> TaskIdentity | None:
    """The task identity stamped on a pod, or None if the pod is not (fully) ours."""
    try:
        return TaskIdentity(
            namespace=annotations[ANN_NAMESPACE],
            name=annotations[ANN_NAME],
            uid=annotations[ANN_UID],
            generation=int(annotations[ANN_GENERATION]),
        )
    except (KeyError, ValueError):
        return None


def _write_secret_env(path: Path, env: Iterable[tuple[str, str]]) -> None:
    lines = []
    for name, value in env:
        if "\n" in value or "\r" in value or "\n" in name:
            raise errors.SpecError(f"secret environment variable {name!r} contains a newline")
        lines.append(f"{name}={value}\n")
    files.write_atomic(path, "".join(lines).encode(), mode=0o600)
    os.chmod(path, 0o600)


class Executor:
    def __init__(
        self, *, settings: Settings, rkt: RktCli, launcher: Launcher | None = None
    ) -> None:
        self.settings = settings
        self.rkt = rkt
        self.launcher = launcher or Launcher(settings=settings, rkt=rkt)
        self._locks = startlock.StartLocks(
            settings.task_root, deadline_seconds=settings.rkt_timeout_seconds
        )
        self.logs = logkeeper.LogKeeper(settings.task_root)

    # ------------------------------------------------------------------ start

    async def ensure_started(
        self,
        plan: LaunchPlan,
        *,
        on_prepared: Callable[[str], Awaitable[None]] | None = None,
        listed: Sequence[PodObservation] | None = None,
    ) -> PodObservation:
        """Idempotent, crash-safe start of the pod of ``plan.identity`` (uid + generation).

        ``on_prepared(uuid)`` is awaited once the pod is prepared and before it is launched
        (also for an adopted pod that was prepared but never launched), so the caller can
        record the UUID first; if it raises, the pod stays prepared and the next call adopts
        it. See the module docstring for the crash-safety argument.

        ``listed``: the task's pods from a listing this agent process took after its own
        last action on the node (the reconciler's pod cache). It replaces the ``rkt list``
        under the start lock unless a start of the task was left unfinished (the start
        marker, written before ``rkt prepare`` and removed once the pod is launched, is
        there): only such a start, by an agent that was killed, can have made a pod that a
        listing of this process does not show."""
        identity = plan.identity
        marker = files.start_marker(self.settings.task_root, identity.uid)
        async with self._locks.hold(identity.uid) as lock_fd:
            # 1. Adopt a live pod of this uid+generation, if rkt knows one.
            if listed is not None and not marker.exists():
                known = [(p.uuid, p.identity, p.state, p.created_at) for p in listed]
            else:
                known = [
                    (p.uuid, identity_from(p.annotations()), p.state, p.created_at)
                    for p in await self.rkt.list()
                ]
            mine = [
                _Live(uuid, state, created)
                for uuid, owner, state, created in known
                if owner == identity and state in ("prepared", "running")
            ]
            if mine:
                mine.sort(key=lambda p: p.created_at.timestamp() if p.created_at else 0.0)
                pod = mine[-1]
                if len(mine) > 1:
                    log.warning(
                        "several live pods for one task uid=%s pods=%s",
                        identity.uid,
                        [p.uuid for p in mine],
                    )
                log.info("adopting pod uid=%s uuid=%s state=%s", identity.uid, pod.uuid, pod.state)
                if pod.state == "prepared":
                    if on_prepared is not None and not await self.launcher.launched(
                        plan.dirs.root, pod.uuid
                    ):
                        await on_prepared(pod.uuid)
                    await self._launch_adopted(plan, pod.uuid)
                files.remove_quietly(marker)  # the start is finished now
                return await self._await_running(plan, pod.uuid)
            # 2. Fresh start: directories, secrets, trust, prepare, launch.
            await asyncio.to_thread(self._make_dirs, plan)
            if plan.trust:
                await self.rkt.trust(plan.trust, secrets=plan.redact)
            files.write_atomic(marker, b"", mode=0o600)
            try:
                uuid = await self.rkt.prepare(
                    plan.prepare, secrets=plan.redact, pass_fds=(lock_fd,)
                )
            except errors.PrepareError:
                # rkt creates the pod before stage0's checks; when they fail it leaves an
                # "aborted prepare" pod that nothing else removes.
                await self.remove_aborted()
                raise
            finally:
                # rkt copied the values into the pod manifest: keep no second copy on disk.
                if plan.secret_env:
                    plan.dirs.secret_env_file.unlink(missing_ok=True)
            log.info(
                "pod prepared uid=%s generation=%s uuid=%s", identity.uid, identity.generation, uuid
            )
            if on_prepared is not None:
                await on_prepared(uuid)
            # The log files of older pods of the task go, but for the previous one's.
            await asyncio.to_thread(logrotate.forget_pods, files.logs_dir(plan.dirs.root), uuid)
            await self.launcher.launch(plan, uuid)
            files.remove_quietly(marker)
            return await self._await_running(plan, uuid)

    def _make_dirs(self, plan: LaunchPlan, *, secrets: bool = True) -> None:
        dirs = plan.dirs
        for path in (dirs.root, dirs.alloc, dirs.local, dirs.secrets, files.logs_dir(dirs.root)):
            path.mkdir(parents=True, exist_ok=True, mode=0o755)
        if secrets and plan.secret_env:
            _write_secret_env(dirs.secret_env_file, plan.secret_env)

    async def _launch_adopted(self, plan: LaunchPlan, uuid: str) -> None:
        root = plan.dirs.root
        if not await self.launcher.launched(root, uuid):
            # Already prepared: rkt holds the environment, the secret file is not needed.
            await asyncio.to_thread(self._make_dirs, plan, secrets=False)
            await self.launcher.launch(plan, uuid)
            return
        await self._check_launch(root, uuid, "prepared")

    async def _check_launch(self, root: Path, uuid: str, state: str) -> None:
        """A pod still prepared whose run-prepared already exited never ran: remove it so the
        next attempt prepares a fresh one, and report why."""
        if state != "prepared":
            return
        record = files.read_exit(files.exit_file(root, uuid))
        if record is None:
            return
        stderr_log = files.log_files(root, uuid)[1]
        try:
            tail = stderr_log.read_bytes()[-600:].decode(errors="replace").strip()
        except OSError:
            tail = ""
        with contextlib.suppress(errors.PodNotFound):
            await self.rkt.rm(uuid)
        files.remove_quietly(*files.pod_files(root, uuid))
        raise errors.RktError(
            f"rkt run-prepared exited with {record.exit_code} before pod {uuid} ran: {tail}",
            returncode=record.exit_code,
            stderr=tail,
        )

    async def _await_running(self, plan: LaunchPlan, uuid: str) -> PodObservation:
        """Wait for the pod to leave ``prepared``; discover its network when the plan asks."""
        root = plan.dirs.root

        async def check(status: PodStatus) -> None:
            await self._check_launch(root, uuid, status.state)

        names = plan.port_names if plan.discover_network else ()
        try:
            found = await discovery.discover(
                self.rkt,
                uuid,
                want_ip=plan.discover_network,
                port_names=names,
                deadline_seconds=self.settings.discovery_timeout_seconds,
                check=check,
                wake_on=discovery.wake_paths(
                    self.settings.rkt_dir, uuid, want_ip=plan.discover_network, launch_root=root
                ),
            )
        except errors.NetworkDiscoveryError as exc:
            observed = await self.observe(uuid)
            if observed is None or observed.finished:
                return observed or self._gone(uuid, plan.identity)
            log.warning("network discovery failed uuid=%s error=%s", uuid, exc)
            if not plan.network_required:
                return observed
            await self.stop(uuid, kill_timeout=plan.kill_timeout_seconds)
            await self.remove(uuid)
            raise errors.NetworkRequiredError(
                f"Trying to map ports but driver could not determine network information: {exc}"
            ) from exc
        return self._observation(found.status, port_map=found.port_map)

    @staticmethod
    def _gone(uuid: str, identity: TaskIdentity) -> PodObservation:
        return PodObservation(
            uuid=uuid,
            identity=identity,
            state="gone",
            running=False,
            finished=True,
            exit_code=None,
            ip=None,
            created_at=None,
            started_at=None,
            finished_at=None,
        )

    # ------------------------------------------------------------------ observe

    def _observation(
        self, status: PodStatus, *, port_map: Mapping[str, int] | None = None
    ) -> PodObservation:
        annotations = status.annotations()
        identity = identity_from(annotations)
        exit_code: int | None = None
        finished_at: datetime | None = None
        stop_signal: str | None = None
        if status.finished:
            codes = [a.exit_code for a in status.apps if a.exit_code is not None]
            exit_code = next((c for c in codes if c != 0), codes[0] if codes else None)
            finished_at = max((a.finished_at for a in status.apps if a.finished_at), default=None)
            if identity is not None:
                root = TaskDirs.for_task(self.settings.task_root, identity).root
                stop_signal = files.read_stop(files.stop_file(root, status.uuid))
                if exit_code is None or finished_at is None:
                    record = files.read_exit(files.exit_file(root, status.uuid))
                    if record is not None:
                        exit_code = record.exit_code if exit_code is None else exit_code
                        finished_at = finished_at or record.finished_at
        return PodObservation(
            uuid=status.uuid,
            identity=identity,
            state=status.state,
            running=status.state == "running",
            finished=status.finished,
            exit_code=exit_code,
            ip=pods.pod_ip(status),
            created_at=status.created_at,
            started_at=status.started_at,
            finished_at=finished_at,
            port_map=dict(port_map or {}),
            stop_signal=stop_signal,
            stamp=PodStamp.from_annotations(annotations),
        )

    async def list_pods(self) -> list[PodObservation]:
        """All pods rkt reports on this node that carry our identity annotations."""
        observed = [self._observation(p) for p in await self.rkt.list()]
        return [o for o in observed if o.identity is not None]

    async def pods_for(self, uid: str) -> list[PodObservation]:
        """The pods of one task (any generation), newest first."""
        mine = [o for o in await self.list_pods() if o.identity and o.identity.uid == uid]
        mine.sort(key=lambda o: o.created_at.timestamp() if o.created_at else 0.0, reverse=True)
        return mine

    async def pods_named(self, namespace: str, name: str) -> list[PodObservation]:
        """The pods of task ``namespace/name`` (any uid or generation), newest first: what
        the node-local commands look up by the name people type."""
        mine = [
            o
            for o in await self.list_pods()
            if o.identity and (o.identity.namespace, o.identity.name) == (namespace, name)
        ]
        mine.sort(key=lambda o: o.created_at.timestamp() if o.created_at else 0.0, reverse=True)
        return mine

    async def observe(self, uuid: str) -> PodObservation | None:
        """Fresh observation of one pod; None if rkt no longer knows it."""
        try:
            return self._observation(await self.rkt.status(uuid))
        except errors.PodNotFound:
            return None
        except errors.RktError as exc:
            if type(exc) is not errors.RktError:
                raise
        # JSON status fails for pods without a manifest (preparing, aborted prepare).
        try:
            text = await self.rkt.status_text(uuid)
        except errors.PodNotFound:
            return None
        return PodObservation(
            uuid=uuid,
            identity=None,
            state=text.state,
            running=text.state == "running",
            finished=text.state in pods.FINISHED_STATES,
            exit_code=None,
            ip=None,
            created_at=text.created_at,
            started_at=text.started_at,
            finished_at=None,
        )

    # ------------------------------------------------------------------ stop / remove

    async def stop(self, uuid: str, *, kill_timeout: float) -> None:
        """``rkt stop``, wait up to the kill timeout, then ``rkt stop --force``.
        ``kill_timeout`` is the task's desired grace (spec.killTimeoutSeconds): the node's
        rule (``argv.kill_timeout``: at least 1 s, at most the node maximum) is applied here
        and nowhere else. Idempotent: an already-stopped, never-started or unknown pod is fine."""
        grace = argv.kill_timeout(kill_timeout, self.settings.max_kill_timeout_seconds)
        before = await self.observe(uuid)
        if before is None or before.finished:
            return  # unknown, or it ended by itself: not a stop by the agent
        settle = self._settle_seconds(before, grace)
        if settle > 0:
            log.info(
                "letting a just-started pod settle before stopping uuid=%s wait=%.1f", uuid, settle
            )
            await asyncio.sleep(settle)
            grace -= settle
        if not await self._signal_stop(uuid):
            return  # prepared (never ran), being prepared, gone: nothing to stop
        self._record_stop(before, "SIGTERM")
        if await self._wait_finished(uuid, grace):
            log.info("pod stopped uuid=%s", uuid)
            return
        log.warning("pod ignored stop, killing uuid=%s kill_timeout=%s", uuid, grace)
        self._record_stop(before, "SIGKILL")
        with contextlib.suppress(errors.PodNotFound, errors.PodWrongState):
            await self._signal_stop(uuid, force=True)
        if not await self._wait_finished(uuid, FORCE_WAIT_SECONDS):
            raise errors.RktError(f"pod {uuid} still running after rkt stop --force")

    @staticmethod
    def _settle_seconds(pod: PodObservation, grace: float, now: datetime | None = None) -> float:
        """How long a graceful stop of ``pod`` waits first (``STAGE1_SETTLE_SECONDS``): the
        rest of its boot window, at most half the grace so the stop keeps time to act."""
        if pod.started_at is None:
            return 0.0
        now = now or datetime.now(tz=pod.started_at.tzinfo)
        age = (now - pod.started_at).total_seconds()
        return max(0.0, min(STAGE1_SETTLE_SECONDS - age, grace / 2))

    def _record_stop(self, pod: PodObservation, signal_name: str) -> None:
        """Remember that the agent ended ``pod`` and how (``files.stop_file``)."""
        if pod.identity is None:
            return
        root = TaskDirs.for_task(self.settings.task_root, pod.identity).root
        with contextlib.suppress(OSError):  # a report detail: never fail a stop for it
            files.write_stop(files.stop_file(root, pod.uuid), signal_name)

    async def _signal_stop(self, uuid: str, *, force: bool = False) -> bool:
        """``rkt stop [--force]``; False when the pod does not run (nothing to stop).

        Real rkt shows a pod ``running`` (with its networks) before stage1 has written its
        pid, and ``rkt stop`` fails in that window (``PodStarting``) without retrying: the
        stop is retried with back-off until the pid is there (``STARTING_WAIT_SECONDS``).
        """
        deadline = time.monotonic() + STARTING_WAIT_SECONDS
        attempt = 0
        while True:
            try:
                await self.rkt.stop(uuid, force=force)
                return True
            except errors.PodNotFound:
                return False
            except errors.PodWrongState:
                observed = await self.observe(uuid)
                if observed is None or not observed.running:
                    return False
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(discovery.next_delay(attempt))
            attempt += 1

    async def _wait_finished(self, uuid: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        attempt = 0
        while True:
            observed = await self.observe(uuid)
            if observed is None or not observed.running:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, discovery.next_delay(attempt)))
            attempt += 1

    async def remove(self, uuid: str) -> None:
        """``rkt rm``; idempotent (unknown pod is fine); a running pod raises PodWrongState."""
        observed = await self.observe(uuid)
        if observed is None:
            return
        with contextlib.suppress(errors.PodNotFound):
            await self.rkt.rm(uuid)
        if observed.identity is not None:
            root = TaskDirs.for_task(self.settings.task_root, observed.identity).root
            files.remove_quietly(*files.pod_files(root, uuid))
        self.logs.forget(uuid)
        log.info("pod removed uuid=%s", uuid)

    async def remove_aborted(self) -> list[str]:
        """``rkt rm`` every ``aborted prepare`` pod of this node: none of them can ever run
        (a pod being prepared right now is ``preparing``, not aborted). Best effort."""
        try:
            uuids = await self.rkt.aborted_prepares()
        except errors.RktError as exc:
            log.warning("cannot list aborted prepares error=%s", exc)
            return []
        for uuid in uuids:
            with contextlib.suppress(errors.PodNotFound, errors.PodWrongState):
                await self.rkt.rm(uuid)
            log.info("aborted prepare removed uuid=%s", uuid)
        return uuids

    async def cleanup(self, identity: TaskIdentity) -> None:
        """Remove the task directories (and supervisor files) of a deleted task."""
        task_root = self.settings.task_root.resolve()
        root = TaskDirs.for_task(task_root, identity).root
        if task_root not in root.resolve().parents:
            raise errors.SpecError(f"task directory {root} escapes {task_root}")
        await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)
        self._locks.forget(identity.uid)
        log.info("task directories removed uid=%s", identity.uid)

    # ------------------------------------------------------------------ exec

    async def exec(self, uuid: str, command: Sequence[str], *, deadline: float) -> ExecResult:
        """Run ``command`` inside the running pod (``rkt enter``, Nomad's Exec): its exit
        code, non-zero included, and the last 4 KiB of its stdout and stderr merged.
        ``RktTimeout`` when it outlives ``deadline`` seconds (it is killed), ``PodNotFound`` /
        ``PodWrongState`` when the pod is gone or not running."""
        output, code = await self.rkt.enter(uuid, command, deadline=deadline)
        return ExecResult(exit_code=code, output=output)

    # ------------------------------------------------------------------ stats / signals

    async def _pod_pid(self, uuid: str) -> int | None:
        text = await self.rkt.status_text(uuid)
        if text.state != "running":
            return None
        return text.pid or stats.pid_from_pod_dir(self.settings.rkt_dir, uuid)

    async def stats(self, uuid: str) -> PodStats | None:
        """CPU seconds and RSS of the pod's process tree; None unless running."""
        try:
            pid = await self._pod_pid(uuid)
        except errors.PodNotFound:
            return None
        return None if pid is None else await asyncio.to_thread(stats.collect, pid)

    async def signal(self, uuid: str, signum: int) -> None:
        """Deliver ``signum`` to the pod's app processes (PodWrongState unless running)."""
        pid = await self._pod_pid(uuid)
        procs = [] if pid is None else await asyncio.to_thread(stats.app_processes, pid)
        if not procs:
            raise errors.PodWrongState(f"pod {uuid} has no running app process to signal")
        sent = await asyncio.to_thread(stats.send, procs, signum)
        log.info("signal sent uuid=%s signal=%d processes=%d", uuid, signum, sent)
