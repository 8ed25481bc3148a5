"""Command line for a long-lived local control plane: ``up``, ``down`` (and internal ``serve``).

``make cluster-up`` runs ``python -m rkt_devkit.cluster up --assets A --dir D``.
``up`` re-executes this program as a detached ``serve`` process (its own session, so it
outlives ``make`` and the terminal), which holds a :class:`ControlPlane` until SIGTERM/SIGINT/
SIGHUP or ``down``. ``serve`` writes ``D/pid`` first and ``D/kubeconfig`` once the control
plane is ready; ``up`` waits for that file and prints its path. Everything ``serve`` says goes
to ``D/serve.log``. ``down`` SIGTERMs the ``serve`` process and waits for it to clean up.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from rkt_devkit.controlplane import ControlPlane, log_tail

log = logging.getLogger(__name__)

_MODULE = "rkt_devkit.cluster"
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for a parent that does not reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _serve_pid(directory: Path) -> int | None:
    """The pid in ``directory/pid`` if that process is a live ``serve`` of this module."""
    try:
        pid = int((directory / "pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if _MODULE.encode() in cmdline and b"serve" in cmdline and _alive(pid):
        return pid
    return None


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    for s in _SIGNALS:  # one clean shutdown; further signals must not interrupt it
        signal.signal(s, signal.SIG_IGN)
    raise SystemExit(0)


def serve(assets: Path, directory: Path, timeout: float) -> int:
    """Hold a control plane until a signal arrives or one of its processes dies."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    pid_file = directory / "pid"
    for s in _SIGNALS:
        signal.signal(s, _exit_on_signal)
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        with ControlPlane(assets, base_dir=directory, start_timeout=timeout) as plane:
            tmp = directory / ".kubeconfig.tmp"
            shutil.copyfile(plane.kubeconfig, tmp)
            tmp.chmod(0o600)
            tmp.replace(kubeconfig)
            log.info(
                "ready in %.1fs at %s; pids %s", plane.startup_seconds, plane.server, plane.pids
            )
            while True:
                time.sleep(1.0)
                dead = plane.dead_processes()
                if dead:
                    for name in dead:
                        log.error("%s died:\n%s", name, log_tail(plane.log_path(name)))
                    return 1
    finally:
        kubeconfig.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        log.info("stopped")


def up(assets: Path, directory: Path, timeout: float) -> int:
    """Start a detached ``serve`` process and wait until its control plane is ready."""
    kubeconfig = directory / "kubeconfig"
    running = _serve_pid(directory)
    if running is not None:
        if kubeconfig.exists():
            _report(kubeconfig, "already running")
            return 0
        sys.stderr.write(f"a control plane is still starting in {directory} (pid {running})\n")
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig.unlink(missing_ok=True)
    serve_log = directory / "serve.log"
    argv = [sys.executable, "-m", _MODULE, "serve", "--assets", str(assets)]
    argv += ["--dir", str(directory), "--timeout", str(timeout)]
    with serve_log.open("wb") as out:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 5 * timeout + 60  # ControlPlane retries port races 5 times
    while not kubeconfig.exists():
        if child.poll() is not None:
            sys.stderr.write(f"the control plane did not start:\n{log_tail(serve_log)}\n")
            return 1
        if time.monotonic() > deadline:
            child.terminate()
            child.wait()
            sys.stderr.write(f"the control plane was not ready in time:\n{log_tail(serve_log)}\n")
            return 1
        time.sleep(0.25)
    child.returncode = 0  # it lives on by design; keep Popen from warning about it
    _report(kubeconfig, f"ready (pid {child.pid}, log {serve_log})")
    return 0


def _report(kubeconfig: Path, what: str) -> None:
    sys.stdout.write(f"control plane {what}\nkubeconfig: {kubeconfig}\n")
    sys.stdout.write(f"export KUBECONFIG={kubeconfig}\n")


def down(directory: Path, timeout: float = 60.0) -> int:
    """Stop the ``serve`` process of ``directory`` (SIGTERM, then SIGKILL after ``timeout``)."""
    pid = _serve_pid(directory)
    if pid is None:
        sys.stdout.write(f"no control plane running in {directory}\n")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):  # the process itself: it removes its pid file before it has exited
        if time.monotonic() > deadline:
            sys.stderr.write(f"pid {pid} did not stop in {timeout:.0f}s: SIGKILL\n")
            os.kill(pid, signal.SIGKILL)
            return 1
        time.sleep(0.2)
    sys.stdout.write(f"control plane in {directory} stopped\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {_MODULE}", description="a local etcd + kube-apiserver for development"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start a control plane in the background and print its kubeconfig"),
        ("serve", "run a control plane in the foreground until SIGTERM (used by 'up')"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--assets", type=Path, required=True, help="etcd, kube-apiserver…")
        command.add_argument("--dir", type=Path, required=True, help="state: kubeconfig, pid, log")
        command.add_argument("--timeout", type=float, default=90.0, help="start timeout (s)")
    commands.add_parser("down", help="stop it").add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    directory = args.dir.resolve()
    if args.command == "down":
        return down(directory)
    assets = args.assets.resolve()
    if args.command == "up":
        return up(assets, directory, args.timeout)
    return serve(assets, directory, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
