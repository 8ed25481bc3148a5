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

The client may go away while the command runs (``kubectl rkt exec`` killed, Ctrl-C, a
dropped connection). Neither the API server nor the kubelet ends a ``pods/exec`` command then:
this process has to notice and end what it started. ``rkt enter`` itself does not help: it
forks the command into the pod's namespaces and waits; killed alone (SIGTERM, SIGHUP or
SIGKILL) it leaves the command running in the pod, re-parented (measured on real rkt 1.30,
host flavor). The command keeps ``rkt enter``'s session and process group, though, and on a
terminal the kernel's hang-up reaches it. So ``rkt enter`` runs as the leader of a session of
its own, and the end of the client is the end of that session (``_end_session``): the
terminal hung up, then every process of the session signalled, SIGKILL after a grace period.
The end of the client shows as:

- ``client_input="held"`` (``run_inherited`` and ``run_in_pty``; ``kubectl rkt exec``
  without ``-i``, ``--end-with-stdin``): the client holds this process's stdin open and never
  writes to it; the command gets no input (``/dev/null``, or a terminal nobody types on) and
  the end of stdin is the end of the client;
- ``client_input="frames"`` (``run_inherited``; ``kubectl rkt exec -i``, ``--stdin-frames``):
  stdin carries the client's input in frames (``frame``), a 4-byte big-endian length and
  that many bytes, and a frame of length 0 for the end of the input. The command's input is
  a pipe fed from the frames and closed at that end-of-input frame; the end of stdin itself
  is the end of the client. (A command that stops reading while more than a pipe's worth
  of input waits blocks the relay: the client's end is then not seen until it reads.)
- on a terminal (``run_in_pty`` with a TTY as stdin, ``kubectl rkt exec -it``): the terminal
  hanging up (end of file or EIO when reading it: a raw terminal has no end-of-file key);
- in every mode, SIGHUP, SIGTERM or SIGINT to this process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType

from rkt_operator.rkt.types import ClientInput

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_EOT = b"\x04"
# Left to end the session after its first signal (SIGTERM; SIGHUP on a terminal): SIGKILL then.
END_GRACE_SECONDS = 5.0
_GONE = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)  # to this process: its client went
MAX_FRAME_BYTES = 1024 * 1024


def frame(data: bytes) -> bytes:
    """One frame of ``client_input="frames"``; ``frame(b"")`` ends the input."""
    return len(data).to_bytes(4, "big") + data


class Frames:
    """Decodes ``client_input="frames"``: ``feed`` the bytes as they come, get the chunks of
    the frames completed (``b""`` for the end-of-input frame). ``ValueError`` for a frame
    longer than ``MAX_FRAME_BYTES`` (not the plugin's: the client is taken as gone)."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        chunks = []
        while len(self._pending) >= 4:
            size = int.from_bytes(self._pending[:4], "big")
            if size > MAX_FRAME_BYTES:
                raise ValueError(f"input frame of {size} bytes")
            if len(self._pending) < 4 + size:
                break
            chunks.append(bytes(self._pending[4 : 4 + size]))
            del self._pending[: 4 + size]
        return chunks


def run_inherited(
    argv: Sequence[str], env: Mapping[str, str], *, client_input: ClientInput = "inherit"
) -> int:
    """``argv`` with this process's stdout and stderr, and its stdin as ``client_input``
    says; its exit code. ``rkt enter`` leads a session of its own, ended with what it
    started in the pod when the client goes (see the module's documentation)."""
    wake = threading.Event()
    stdin = sys.stdin.fileno()
    if client_input == "frames":
        feed, sink = os.pipe()
        try:
            child = subprocess.Popen(list(argv), env=dict(env), stdin=feed, start_new_session=True)
        except BaseException:
            os.close(sink)
            raise
        finally:
            os.close(feed)
        threading.Thread(
            target=_relay_frames, args=(stdin, sink, wake), name="input-frames", daemon=True
        ).start()
    else:
        held = client_input == "held"
        child = subprocess.Popen(
            list(argv), env=dict(env), stdin=subprocess.DEVNULL if held else None,
            start_new_session=True,
        )  # fmt: skip
        if held:
            _watch_input(stdin, wake)
    with _on_signals(_GONE, wake.set):
        while not _exited(child.pid):
            if wake.wait(0.5) and not _exited(child.pid):
                log.info("exec client gone, ending the command pid=%d", child.pid)
                _end_session(child.pid, signal.SIGTERM)
                break
    child.returncode = _reap(child.pid)
    return child.returncode


def _watch_input(fd: int, ended: threading.Event) -> None:
    """Set ``ended`` once ``fd`` reaches its end (or fails): a daemon thread reads and drops
    what arrives (nothing, when the caller holds it open unwritten)."""

    def drain() -> None:
        try:
            while os.read(fd, _CHUNK):
                pass
        except OSError:
            pass
        ended.set()

    threading.Thread(target=drain, name="input-watch", daemon=True).start()


def _relay_frames(source: int, sink: int, ended: threading.Event) -> None:
    """Feed the command's input (``sink``) from the frames read on ``source``, close it at the
    end-of-input frame, and set ``ended`` once ``source`` itself ends (the client went), or
    carries no frames (not the plugin's)."""
    frames = Frames()
    open_sink = True
    try:
        while data := os.read(source, _CHUNK):
            for chunk in frames.feed(data):
                if not open_sink:
                    continue
                try:
                    if chunk:
                        _write_all(sink, chunk)
                        continue
                except BrokenPipeError:  # the command stopped reading: drop the rest
                    pass
                os.close(sink)
                open_sink = False
    except (OSError, ValueError):
        pass
    finally:
        if open_sink:
            os.close(sink)
        ended.set()


@contextlib.contextmanager
def _on_signals(signums: Sequence[signal.Signals], action: Callable[[], None]) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        action()

    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has ended, without reaping it: until it is reaped its pid, and so
    its session id, cannot name another process."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None and info.si_pid == pid


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return _exit_code(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def session_members(sid: int, proc: str = "/proc") -> list[int]:
    """The live processes (zombies left out) of session ``sid``, in this PID namespace: the
    command ``rkt enter`` started in the pod's namespaces is among them (it keeps the
    session), and so is what that command started, unless it made a session of its own."""
    members = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.getsid(pid) != sid:
                continue
            with open(f"{proc}/{name}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            members.append(pid)
    return members


def _signal_session(sid: int, signum: int) -> int:
    """Signal every live process of session ``sid``; how many. Each through a pidfd opened
    before its session is checked, so a pid reused meanwhile is never signalled."""
    sent = 0
    for pid in session_members(sid):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if os.getsid(pid) == sid:
                signal.pidfd_send_signal(pidfd, signum)
                sent += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return sent


def _end_session(leader: int, first: signal.Signals) -> None:
    """End the session of ``leader`` (a child not yet reaped, so the session id stays its
    own): ``first`` to each of its processes, SIGKILL to those left after the grace period,
    and a while (the same again at most) for those to be gone: a kill is not immediate."""
    sent = _signal_session(leader, first)
    _wait_gone(leader)
    killed = _signal_session(leader, signal.SIGKILL)
    left = _wait_gone(leader)
    log.info(
        "exec session ended session=%d signal=%s signalled=%d killed=%d left=%d",
        leader, first.name, sent, killed, len(left),
    )  # fmt: skip


def _wait_gone(sid: int) -> list[int]:
    """Wait, at most ``END_GRACE_SECONDS``, until session ``sid`` has no live process; those
    still there."""
    deadline = time.monotonic() + END_GRACE_SECONDS
    while (left := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


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


def run_in_pty(
    argv: Sequence[str], env: Mapping[str, str], *, client_input: ClientInput = "inherit"
) -> int:
    """``argv`` on a new pseudo-terminal, relayed to this process's stdin and stdout. The
    session ends when the caller's terminal hangs up, or (``client_input="held"``: nothing
    is typed, the input only tells the client is there) when the input ends. A terminal
    carries no frames: ``client_input="frames"`` is refused (``ValueError``)."""
    if client_input == "frames":
        raise ValueError("a terminal's input cannot come in frames")
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout.flush()
    pid, master = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal and stdio
        try:
            os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 - an argument list, no shell
        finally:
            os._exit(127)
    interactive = os.isatty(stdin)
    hang_up_at_end = interactive or client_input == "held"
    saved = termios.tcgetattr(stdin) if interactive else None
    previous_winch = None
    if interactive:
        _copy_window_size(stdin, master)

        def resized(signum: int, frame: FrameType | None) -> None:
            _copy_window_size(stdin, master)

        previous_winch = signal.signal(signal.SIGWINCH, resized)
        tty.setraw(stdin)
    gone_r, gone_w = os.pipe()  # written on SIGHUP/SIGTERM: the client went
    client_gone = False

    def went() -> None:
        os.write(gone_w, b"x")

    try:
        with _on_signals(_GONE, went):
            client_gone = _relay(master, stdin, stdout, gone=gone_r, hang_up_at_end=hang_up_at_end)
    finally:
        if saved is not None:
            with contextlib.suppress(termios.error):  # a hung-up terminal refuses it
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if previous_winch is not None:
            signal.signal(signal.SIGWINCH, previous_winch)
        os.close(master)  # when the command still runs: its terminal hangs up
        os.close(gone_r)
        os.close(gone_w)
    if client_gone and not _exited(pid):
        log.info("exec client gone, ending the command pid=%d", pid)
        _end_session(pid, signal.SIGHUP)
    return _reap(pid)


def _read_input(stdin: int) -> bytes:
    """A chunk of input; b"" at its end, and when a terminal hung up (EIO)."""
    try:
        return os.read(stdin, _CHUNK)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return b""


def _relay(master: int, stdin: int, stdout: int, *, gone: int, hang_up_at_end: bool) -> bool:
    """Copy stdin -> master and master -> stdout until the command closes the terminal (False)
    or the client goes (True): ``gone`` readable, or the input ends with ``hang_up_at_end``."""
    reading_input = True
    line_start = True
    while True:
        watched = [master, gone, stdin] if reading_input else [master, gone]
        try:
            ready, _, _ = select.select(watched, [], [])
        except InterruptedError:  # SIGWINCH
            continue
        if gone in ready:
            return True
        if master in ready:
            try:
                data = os.read(master, _CHUNK)
            except OSError as exc:  # EIO: every holder of the terminal has closed it
                if exc.errno != errno.EIO:
                    raise
                return False
            if not data:
                return False
            _write_all(stdout, data)
        if reading_input and stdin in ready:
            data = _read_input(stdin)
            if not data and hang_up_at_end:
                return True
            if data:
                _write_all(master, data)
                line_start = data.endswith(b"\n")
            else:
                reading_input = False
                # End of input as a person types it: ^D ends the input at the start of a
                # line; in the middle of one, a first ^D hands over the partial line.
                _write_all(master, _EOT if line_start else _EOT + _EOT)
