"""The controller processes the benchmark measures: the agent (``rkt-operator run``) and the
floors (``bench/floor.py``), each a subprocess with its own log file and process group.

Owns starting one, telling whether it still lives, and stopping it: SIGTERM to the process
(a graceful kopf shutdown), then SIGKILL to its whole process group after a grace period.
Pods the agent launched in their own sessions are not this module's business (see
``simnode``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


@dataclass
class Controller:
    """One controller under test: ``name`` labels its figures; ``node`` is the node it serves;
    ``marker`` (if any) is a command-line fragment found in every rkt process it starts."""

    name: str
    node: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    marker: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    stopped: bool = False

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} is not started"
        return self.popen.pid

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=REPO,
                process_group=0,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise with the log's last lines when the controller has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.popen.returncode}; "
                f"last lines of {self.log}:\n{self.log_tail()}"
            )

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, wait ``grace`` seconds, then SIGKILL the process group. Idempotent."""
        if self.popen is None or self.stopped:
            return
        popen = self.popen
        if popen.poll() is None:
            try:
                popen.send_signal(signal.SIGTERM)
                popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in its group (rkt commands it was running).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        self.stopped = True

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_bytes()[-32768:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def agent(
    *,
    venv_bin: Path,
    node: str,
    rkt_flags: Sequence[str],
    kubeconfig: Path,
    log: Path,
    marker: str,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    profile: Path | None = None,
    memory_profile: bool = False,
) -> Controller:
    """The node agent on the simulator, as an operator would run it (flags = settings).
    ``marker``: a path in the command line of every rkt process and pod supervisor it starts
    (the node's directory, which holds both the rkt store and the task root). ``profile``:
    run it under yappi (``bench/profiled_agent.py``), its profile written there at exit;
    under tracemalloc instead with ``memory_profile``."""
    command = [str(venv_bin / "rkt-operator")]
    if profile is not None:
        mode = ["--memory"] if memory_profile else []
        script = str(BENCH / "profiled_agent.py")
        command = [str(venv_bin / "python"), script, *mode, str(profile), "--"]
    argv = [
        *command,
        "run",
        f"--node-name={node}",
        *rkt_flags,
        "--liveness-endpoint=",
        "--metrics-endpoint=",
        "--log-format=text",
        *extra,
    ]
    return Controller(
        name="agent",
        node=node,
        argv=argv,
        log=log,
        env={"KUBECONFIG": str(kubeconfig), **(env or {})},
        marker=marker,
    )


def node_flags(*, rkt_path: Path, rkt_dir: Path, local_config: Path, task_root: Path) -> list[str]:
    """The agent settings that name the node's rkt (shared by the agent and the rkt floor)."""
    return [
        f"--rkt-path={rkt_path}",
        f"--rkt-dir={rkt_dir}",
        f"--rkt-local-config={local_config}",
        f"--task-root={task_root}",
        "--launcher=detached",
    ]


def floor(
    *,
    python: Path,
    engine: str,
    node: str,
    kubeconfig: Path,
    log: Path,
    selector: str = "field",
    rkt_flags: Sequence[str] = (),
    marker: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Controller:
    """The floor process (``bench/floor.py``) with one engine, for one node. The ``rkt``
    engine takes the agent's node flags (``rkt_flags``) and, like the agent, a ``marker``."""
    argv = [
        str(python),
        str(BENCH / "floor.py"),
        f"--engine={engine}",
        f"--node-name={node}",
        f"--selector={selector}",
        *rkt_flags,
    ]
    return Controller(
        name=f"floor-{engine}",
        node=node,
        argv=argv,
        log=log,
        env={"KUBECONFIG": str(kubeconfig), **(env or {})},
        marker=marker,
    )
