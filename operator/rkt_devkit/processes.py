"""Child processes of the test control plane: start, wait until ready, stop, read their logs.

Each process runs in its own process group (so a stop reaches anything it forks, and a
Ctrl-C in the terminal does not kill it before the harness stops it in order) with stdout
and stderr appended to one log file. Start failures become :class:`ControlPlaneError` naming
the binary and quoting the tail of its log; a lost race for a port is :class:`PortTaken`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ControlPlaneError(RuntimeError):
    """The control plane could not start (missing binary, a process died, not ready in time)."""


class PortTaken(ControlPlaneError):
    """A process lost the race for a port we picked: worth another attempt with new ports."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (racy by nature: a start that loses the race is retried)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class ManagedProcess:
    """One started binary: its name (for messages), the Popen handle and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def spawn(
        cls, name: str, binary: Path, args: list[str], *, log_path: Path, header: str
    ) -> ManagedProcess:
        """Start ``binary args`` in a new process group, appending its output to ``log_path``."""
        with log_path.open("ab") as fh:
            fh.write(f"=== {header}: {binary} {' '.join(args)}\n".encode())
            fh.flush()
            try:
                popen = subprocess.Popen(
                    [str(binary), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=log_path.parent,
                    process_group=0,
                )
            except OSError as exc:
                raise ControlPlaneError(f"{name}: cannot execute {binary}: {exc}") from exc
        return cls(name, popen, log_path)

    @property
    def exited(self) -> bool:
        return self.popen.poll() is not None

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` every 250 ms until it is true, while checking the process lives."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.popen.poll()
            if code is not None:
                tail = log_tail(self.log)
                message = f"{self.name} exited with code {code} while starting"
                if "address already in use" in tail:
                    raise PortTaken(message)
                raise ControlPlaneError(f"{message}; last lines of {self.log.name}:\n{tail}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{self.name} not ready after {timeout:.0f}s; "
                    f"last lines of {self.log.name}:\n{log_tail(self.log)}"
                )
            time.sleep(0.25)

    def stop(self, timeout: float) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds, reap the process."""
        popen = self.popen
        if popen.poll() is not None:
            return
        try:
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait(timeout)
        except ProcessLookupError:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0fs: SIGKILL", self.name, timeout)
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
