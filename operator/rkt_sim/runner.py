"""The running pod: what ``run-prepared`` does after the pod moved to ``pods/run``.

The run-prepared process plays systemd-nspawn: it holds the pod directory's exclusive lock
for its whole life (so the pod is ``running`` while it lives and ``exited`` once it is gone),
wrote ``ppid`` with its own pid, starts every app as a real child process (its own process
group, killed with the supervisor by ``PR_SET_PDEATHSIG``), copies each app's stdout and
stderr both to ``<pod>/app.log`` and to its own stdout/stderr, points
``stage1/rootfs/rkt/supervisor-status`` at ``ready`` once the apps are started, and writes
``stage1/rootfs/rkt/status/<app>`` with each app's exit code.

Exit: the first non-zero app code (the others are then stopped, as ``OnFailure=halt.target``
does), else 0. SIGTERM, SIGINT or SIGHUP stop the pod gracefully: SIGTERM to every app's
process group, SIGKILL after the grace period (``stop_grace_seconds`` in the simulator
config, default 5 s); apps ended by that shutdown record 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rkt_sim import appenv, isolation
from rkt_sim.pods import APP_STATUS_DIR, SUPERVISOR_STATUS

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_WATCHED = {*_STOP_SIGNALS, signal.SIGCHLD}


def stage1_error(message: str) -> None:
    sys.stderr.write(f"stage1: {message}\n")
    sys.stderr.flush()


@dataclass
class AppProcess:
    name: str
    process: subprocess.Popen[bytes]
    own_group: bool = True
    code: int | None = None
    pumps: list[threading.Thread] = field(default_factory=list)


class _Tee:
    """Copies one app stream to the pod log and to one of our own streams."""

    def __init__(self, log: IO[bytes], lock: threading.Lock, target: IO[bytes]) -> None:
        self.log, self.lock, self.target = log, lock, target
        self.target_ok = True

    def pump(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                self.log.write(chunk)
                self.log.flush()
            if self.target_ok:
                try:
                    self.target.write(chunk)
                    self.target.flush()
                except (OSError, ValueError):
                    self.target_ok = False
        os.close(fd)


@dataclass
class RunOptions:
    hostname: str
    files: dict[str, str]
    interactive: bool
    grace_seconds: float
    debug: bool = False


class PodRunner:
    def __init__(
        self, data_dir: Path, pod_dir: Path, manifest: dict[str, Any], options: RunOptions
    ) -> None:
        self.data_dir = data_dir
        self.pod_dir = pod_dir
        self.manifest = manifest
        self.options = options
        self.apps: list[AppProcess] = []
        self.log = open(pod_dir / "app.log", "ab")  # noqa: SIM115 - lives as long as the pod
        self.log_lock = threading.Lock()
        self.status_dir = pod_dir / APP_STATUS_DIR
        self.status_dir.mkdir(parents=True, exist_ok=True)

    # -- start --------------------------------------------------------------------------------
    def plan_for(self, runtime_app: dict[str, Any]) -> isolation.ChildPlan:
        name = runtime_app["name"]
        app = runtime_app.get("app") or {}
        root = appenv.stage2_rootfs(self.pod_dir, name)
        root.mkdir(parents=True, exist_ok=True)
        uid, gid = appenv.resolve_ids(
            appenv.lookup_root(self.data_dir, self.pod_dir, runtime_app), app
        )
        binds = appenv.binds_for(self.pod_dir, self.manifest, runtime_app)
        isolate = os.geteuid() == 0
        plan = isolation.ChildPlan(
            rootfs=str(root),
            isolate=isolate,
            binds=binds,
            hostname=self.options.hostname,
            read_only_rootfs=bool(runtime_app.get("readOnlyRootFS")),
            workdir=str(app.get("workingDirectory") or "/"),
            uid=uid if isolate else None,
            gid=gid if isolate else None,
            groups=[int(g) for g in app.get("supplementaryGIDs") or []],
        )
        if isolate and appenv.uses_overlay(self.pod_dir):
            lower = self.data_dir / "cas" / "tree" / runtime_app["image"]["id"] / "rootfs"
            upper, work = appenv.overlay_dirs(self.pod_dir, runtime_app["image"]["id"], name)
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            self._write_files(upper)
            plan.overlay = (str(lower), str(upper), str(work))
        else:
            self._write_files(root)
            if not isolate:
                isolation.make_symlink_binds(root, binds)
        return plan

    def _write_files(self, root: Path) -> None:
        for rel, content in self.options.files.items():
            path = root / rel
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_symlink():
                    path.unlink()
                path.write_text(content)

    def start(self, runtime_app: dict[str, Any]) -> AppProcess:
        name = runtime_app["name"]
        exec_ = list((runtime_app.get("app") or {}).get("exec") or [])
        if not exec_:
            raise appenv.AppSetupError(f'app "{name}" has no exec')
        plan = self.plan_for(runtime_app)
        read_err, write_err = os.pipe2(os.O_CLOEXEC)
        plan.error_fd = write_err
        plan.init_pid_file = str(self.pod_dir / "appsinfo" / name / "init-pid")
        piped = not self.options.interactive
        executable = exec_[0]
        if not plan.isolate:  # no chroot: run the image's binary, not the host's
            candidate = Path(plan.rootfs) / exec_[0].lstrip("/")
            executable = str(candidate) if candidate.exists() else exec_[0]
        try:
            process = subprocess.Popen(
                exec_,
                executable=executable,
                env=appenv.environment(runtime_app),
                stdin=None if self.options.interactive else subprocess.DEVNULL,
                stdout=subprocess.PIPE if piped else None,
                stderr=subprocess.PIPE if piped else None,
                preexec_fn=lambda: isolation.prepare_child(plan),
                start_new_session=not self.options.interactive,
                close_fds=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(write_err)
            detail = os.read(read_err, 4096).decode(errors="replace")
            os.close(read_err)
            raise appenv.AppSetupError(f'failed to start app "{name}": {detail or exc}') from None
        os.close(write_err)
        os.close(read_err)
        proc = AppProcess(name, process, own_group=not self.options.interactive)
        if self.options.debug:
            stage1_error(f'started app "{name}": {" ".join(exec_)} (pid {process.pid})')
        pid_file = self.pod_dir / "appsinfo" / name / "pid"
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(process.pid))
        if piped:
            pairs = ((process.stdout, sys.stdout.buffer), (process.stderr, sys.stderr.buffer))
            for stream, target in pairs:
                if stream is None:
                    continue
                tee = _Tee(self.log, self.log_lock, target)
                fd = os.dup(stream.fileno())
                stream.close()
                thread = threading.Thread(target=tee.pump, args=(fd,), daemon=True)
                thread.start()
                proc.pumps.append(thread)
        return proc

    # -- supervise ------------------------------------------------------------------------------
    def run(self) -> int:
        for runtime_app in self.manifest.get("apps") or []:
            self.apps.append(self.start(runtime_app))
        ready = self.pod_dir / SUPERVISOR_STATUS
        with contextlib.suppress(FileExistsError):
            os.symlink("ready", ready)
        return self._supervise()

    def stop_all(self) -> None:
        """Kill whatever was started when the pod cannot be set up completely."""
        self._signal_all(signal.SIGKILL)
        for app in self.apps:
            with contextlib.suppress(subprocess.TimeoutExpired):
                app.process.wait(timeout=5)

    def _signal_all(self, sig: int) -> None:
        for app in self.apps:
            if app.code is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if app.own_group:
                        os.killpg(app.process.pid, sig)
                    else:
                        os.kill(app.process.pid, sig)

    def _supervise(self) -> int:
        first_failure: int | None = None
        deadline: float | None = None
        while True:
            for app in self.apps:
                if app.code is None and app.process.poll() is not None:
                    app.code = self._record(app, stopping=deadline is not None)
                    if app.code != 0 and first_failure is None:
                        first_failure = app.code
                        if deadline is None:
                            deadline = time.monotonic() + self.options.grace_seconds
                            self._signal_all(signal.SIGTERM)
            if all(app.code is not None for app in self.apps):
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._signal_all(signal.SIGKILL)
            info = signal.sigtimedwait(_WATCHED, 0.5)
            if info is not None and info.si_signo in _STOP_SIGNALS and deadline is None:
                deadline = time.monotonic() + self.options.grace_seconds
                self._signal_all(signal.SIGTERM)
        for app in self.apps:
            for thread in app.pumps:
                thread.join(timeout=1.0)
        self.log.close()
        return first_failure or 0

    def _record(self, app: AppProcess, *, stopping: bool) -> int:
        if self.options.debug:
            stage1_error(f'app "{app.name}" ended with status {app.process.returncode}')
        returncode = app.process.returncode
        if returncode < 0:
            # killed by a signal: systemd reports the signal number; a pod shutdown is clean
            code = (
                0 if stopping and -returncode in (signal.SIGTERM, signal.SIGKILL) else -returncode
            )
        else:
            code = returncode
        (self.status_dir / app.name).write_text(str(code))
        return code


def block_signals() -> None:
    """Route stop signals and SIGCHLD to ``sigtimedwait`` (children unblock them again)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
