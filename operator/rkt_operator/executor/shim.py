"""The detached supervisor of one pod: ``python -m rkt_operator.executor.shim``.

Detached (the default): the launcher starts it in a new session with stdin from /dev/null;
it forks once so that the long-lived supervisor is not a child of the agent (the agent can
die, be SIGKILLed or restart: the pod and its supervisor keep running), and the short-lived
first process reports on stdout how the launch went:

- ``started <supervisor pid> <rkt pid>``: the supervisor claimed the pod and runs rkt;
- ``already-launched``: another supervisor already claimed this pod (nothing started);
- ``error <message>``: nothing started.

The supervisor claims the pod by creating the launch marker atomically (``link``), runs the
given ``rkt ... run-prepared ... <uuid>`` argv with output to the log files, forwards
SIGTERM/SIGINT to it, ignores SIGHUP, waits, and records the exit status atomically in the
exit file. With ``--foreground`` it supervises in its own process instead (the main process
of a transient systemd unit; ``KillMode=mixed`` then signals it first, and it forwards).
Standard library + ``executor.files`` only: this must start fast and stay small.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rkt_operator.executor import files


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rkt-operator-shim")
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--exit-file", type=Path, required=True)
    parser.add_argument("--stdout", type=Path, required=True)
    parser.add_argument("--stderr", type=Path, required=True)
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="supervise in this process (as a systemd unit's main process): no fork, the "
        "launch report goes to stdout",
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def _claim(marker: Path) -> bool:
    """Create the launch marker with our pid, atomically and only if nobody else did."""
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    files.write_atomic(tmp, files.marker_content(os.getpid()))
    try:
        os.link(tmp, marker)
    except FileExistsError:
        return False
    finally:
        files.remove_quietly(tmp)
    return True


def _supervise(args: argparse.Namespace, argv: Sequence[str], report: int) -> int:
    """The long-lived child: claim, run rkt, record its exit."""

    def say(line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(report, (line + "\n").encode())
            os.close(report)

    if not _claim(args.marker):
        say("already-launched")
        return 0
    try:
        out = args.stdout.open("ab")
        err = args.stderr.open("ab")
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    except OSError as exc:
        files.remove_quietly(args.marker)
        say(f"error cannot run {argv[0]!r}: {exc.strerror}")
        return 1

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    say(f"started {os.getpid()} {child.pid}")
    returncode = child.wait()
    files.write_exit(args.exit_file, returncode)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        sys.stdout.write("error no command given\n")
        return 2
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.foreground:
        return _supervise(args, command, os.dup(sys.stdout.fileno()))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the supervisor
        os.close(read_end)
        os.setsid()
        # Nothing of the launcher's pipes may stay open in the long-lived process: its own
        # diagnostics (a traceback, if ever) go to the pod's stderr log.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
        try:
            log_fd = os.open(args.stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            log_fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        code = 1
        try:
            code = _supervise(args, command, write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        line = pipe.readline().decode(errors="replace").strip()
    sys.stdout.write((line or "error supervisor exited before reporting") + "\n")
    sys.stdout.flush()
    return 0 if line.startswith(("started", "already-launched")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
