"""The nodes of the local demo: one rkt store and one agent process per node.

Owns a node's directory layout (``<dir>/<node>/{rkt,etc,tasks,agent.log}``), putting images
into its rkt store, starting its agent exactly as an operator would (``rkt-operator run``
with flags, a kubeconfig in the environment, a log file) as a process in its own session so
that it may outlive the demo, stopping it by pid, and removing any pod left behind.
The store is rkt-sim's, or real rkt's when ``real_rkt`` names the binary: then every rkt
process (the agent's included) finds ``nspawn_dir`` (the ``systemd-nspawn`` shim a host
without systemd as PID 1 needs for the host stage1) first on its PATH, and the clean-up
also ``rkt rm``s every pod, which removes its veth, network namespace, iptables chains and
mounts. Nothing here reads the caller's environment: every path and binary is passed in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from rkt_devkit.controlplane import log_tail

# The agent's PATH inside the demo: the virtualenv's scripts first, then the usual system
# directories (the same search order as the container image's PATH).
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NodeError(RuntimeError):
    """A node could not be prepared or its agent could not be started."""


@dataclass(frozen=True)
class SimNode:
    """One simulated node: its name, its directory and the binaries it uses."""

    name: str
    root: Path
    bin_dir: Path  # holds rkt-operator and rkt-sim (the virtualenv's bin/)
    real_rkt: Path | None = None  # a real rkt binary instead of rkt-sim
    nspawn_dir: Path | None = None  # with real rkt: put first on every rkt process's PATH

    @property
    def rkt_dir(self) -> Path:
        return self.root / "rkt"

    @property
    def local_config(self) -> Path:
        return self.root / "etc"

    @property
    def task_root(self) -> Path:
        return self.root / "tasks"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"

    @property
    def rkt_sim(self) -> Path:
        """The node's rkt binary (rkt-sim, or the real rkt)."""
        return self.real_rkt or self.bin_dir / "rkt-sim"

    @property
    def path_env(self) -> str:
        """PATH of the agent and of every rkt command run here."""
        first = [str(self.nspawn_dir)] if self.real_rkt and self.nspawn_dir else []
        return ":".join([*first, str(self.bin_dir), _SYSTEM_PATH])

    def prepare(self) -> None:
        for path in (self.rkt_dir, self.local_config, self.task_root):
            path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 and self.real_rkt is None:
            # rkt (and so rkt-sim) runs pods only as root; for a demo as an ordinary user the
            # simulator's documented approximation runs apps without chroot or namespaces.
            (self.rkt_dir / ".sim-config.json").write_text('{"allow_unprivileged": true}\n')

    def _sim(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        argv = [str(self.rkt_sim), f"--dir={self.rkt_dir}", f"--local-config={self.local_config}"]
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False,
            env={"PATH": self.path_env, "LANG": "C.UTF-8"},
        )  # fmt: skip

    def fetch(self, aci: Path) -> str:
        """Import an unsigned ACI into this node's store; its image id."""
        done = self._sim("--insecure-options=image", "fetch", str(aci))
        if done.returncode != 0:
            raise NodeError(f"{self.name}: rkt fetch {aci.name}: {done.stderr.strip()}")
        return done.stdout.strip()

    def agent_argv(self, liveness_port: int) -> list[str]:
        """``rkt-operator run`` for this node, every node-specific setting as a flag."""
        return [
            str(self.bin_dir / "rkt-operator"), "run",
            f"--node-name={self.name}",
            f"--rkt-path={self.rkt_sim}",
            f"--rkt-dir={self.rkt_dir}",
            f"--rkt-local-config={self.local_config}",
            f"--task-root={self.task_root}",
            # The demo has no systemd to hand pods to: a detached supervisor keeps them.
            "--launcher=detached",
            f"--liveness-endpoint=http://127.0.0.1:{liveness_port}/healthz",
            # Several agents share this host: no fixed metrics port (run one with it to scrape).
            "--metrics-endpoint=",
            "--log-format=text",
        ]  # fmt: skip

    def start_agent(self, kubeconfig: Path, liveness_port: int) -> subprocess.Popen[bytes]:
        """Start the agent in its own session (so it can outlive the demo), logging to a file."""
        env = {
            "PATH": self.path_env,
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
        }
        with self.agent_log.open("ab") as log:
            try:
                return subprocess.Popen(
                    self.agent_argv(liveness_port), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                raise NodeError(f"{self.name}: cannot start the agent: {exc}") from exc

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(self.agent_log, lines)

    def _pods(self) -> list[tuple[str, str]]:
        done = self._sim("list", "--format=json")
        try:
            pods = json.loads(done.stdout or "null") or []
        except ValueError:
            pods = []
        return [
            (str(p["name"]), str(p.get("state", "")))
            for p in pods
            if isinstance(p, dict) and "name" in p
        ]

    def remove_pods(self, timeout: float = 60.0) -> list[str]:
        """Force-stop and remove every pod left in this node's store; their UUIDs. A stop
        is retried until ``timeout``: real rkt refuses one until the pod's pid is written."""
        pods = self._pods()
        uuids = [uuid for uuid, _ in pods]
        deadline = time.monotonic() + timeout
        while running := [uuid for uuid, state in pods if state == "running"]:
            self._sim("stop", "--force", *running)
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
            pods = self._pods()
        for uuid, _ in self._pods():
            self._sim("rm", uuid)
        self._sim("gc", "--grace-period=0s")
        # Anything still running from this store (a supervisor that lost its pod record) goes.
        for proc in self._store_processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return uuids

    def _store_processes(self) -> list[psutil.Process]:
        marker = str(self.rkt_dir)
        return [
            proc
            for proc in psutil.process_iter(["cmdline"])
            if any(marker in arg for arg in proc.info.get("cmdline") or [])
        ]


def is_agent(pid: int, node: SimNode) -> bool:
    """Whether ``pid`` is still the agent of ``node`` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and f"--node-name={node.name}".encode() in cmdline


def stop_agent(pid: int, node: SimNode, timeout: float = 30.0) -> bool:
    """SIGTERM the agent's process group, SIGKILL after ``timeout``; False if it was gone."""
    if not is_agent(pid, node):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while is_agent(pid, node):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    return True
