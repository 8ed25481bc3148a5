"""The agent and the binder as child processes of a test: started in a session of their
own with their output appended to one log, stopped by SIGTERM (SIGKILL after a grace)
or killed on the spot, and started again as often as a test needs."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


class ChildProcess:
    """Mixin for a dataclass with ``process`` and ``starts`` fields."""

    process: subprocess.Popen[bytes] | None
    starts: int
    stop_grace = 30.0

    def _spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, label: str,
        cwd: Path | None = None,
    ) -> None:  # fmt: skip
        with log_path.open("ab") as log:
            log.write(f"--- {label} start #{self.starts + 1}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env), cwd=cwd, start_new_session=True,
            )  # fmt: skip
        self.starts += 1

    def _signal(self, signum: int, timeout: float) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signum)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, as kubelet would stop the container."""
        self._signal(signal.SIGTERM, self.stop_grace)

    def kill(self) -> None:
        """SIGKILL: the process dies on the spot."""
        self._signal(signal.SIGKILL, 30)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
