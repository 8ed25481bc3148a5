"""Run an rkt command attached to the caller's terminal or pipes (``rkt-operator exec``).

Two modes, as Nomad's streaming exec (``nomad alloc exec [-t]``) offered:

- ``run_inherited``: the command gets this process's stdin, stdout and stderr as they are,
  so input is forwarded, output streams as it is produced, and stdout and stderr stay apart;
- ``run_in_pty``: the command gets a new pseudo-terminal as its controlling terminal and
  stdin/stdout/stderr (so it sees a TTY even when the caller has pipes); bytes are relayed
  both ways, the caller's terminal (when it is one) is put in raw mode and its window size
  is passed on, also on ``SIGWINCH``. A terminal has one output stream: stderr arrives on
  stdout. When the caller's input ends, an end-of-file character is typed.

Both return the command's exit code (128 + N when a signal N ended it). Only
``rkt_operator.rkt.cli`` calls these, with an argument list, never a shell.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import tty
from collections.abc import Mapping, Sequence
from types import FrameType

_CHUNK = 64 * 1024
_EOT = b"\x04"


def run_inherited(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """``argv`` with this process's stdio; its exit code."""
    done = subprocess.run(list(argv), env=dict(env), check=False)
    return _exit_code(done.returncode)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _copy_window_size(source: int, target: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def run_in_pty(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """``argv`` on a new pseudo-terminal, relayed to this process's stdin and stdout."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout.flush()
    pid, master = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal and stdio
        try:
            os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 - an argument list, no shell
        finally:
            os._exit(127)
    interactive = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if interactive else None
    previous_winch = None
    if interactive:
        _copy_window_size(stdin, master)

        def resized(signum: int, frame: FrameType | None) -> None:
            _copy_window_size(stdin, master)

        previous_winch = signal.signal(signal.SIGWINCH, resized)
        tty.setraw(stdin)
    try:
        _relay(master, stdin, stdout)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if previous_winch is not None:
            signal.signal(signal.SIGWINCH, previous_winch)
        os.close(master)
    _, status = os.waitpid(pid, 0)
    return _exit_code(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def _relay(master: int, stdin: int, stdout: int) -> None:
    """Copy stdin -> master and master -> stdout until the command closes the terminal."""
    reading_input = True
    line_start = True
    while True:
        watched = [master, stdin] if reading_input else [master]
        try:
            ready, _, _ = select.select(watched, [], [])
        except InterruptedError:  # SIGWINCH
            continue
        if master in ready:
            try:
                data = os.read(master, _CHUNK)
            except OSError as exc:  # EIO: every holder of the terminal has closed it
                if exc.errno != errno.EIO:
                    raise
                return
            if not data:
                return
            _write_all(stdout, data)
        if reading_input and stdin in ready:
            data = os.read(stdin, _CHUNK)
            if data:
                _write_all(master, data)
                line_start = data.endswith(b"\n")
            else:
                reading_input = False
                # End of input as a person types it: ^D ends the input at the start of a
                # line; in the middle of one, a first ^D hands over the partial line.
                _write_all(master, _EOT if line_start else _EOT + _EOT)
