"""The benchmark's simulated node: an rkt simulator store holding a long-running busybox image.

Owns the node's directories (rkt ``--dir``, ``--local-config``, the agent's task root), the
test image (an ACI built with ``rkt_devkit.aci`` whose app runs ``sleep 3600``,
fetched into the store so no task downloads anything), the RktTask spec that runs it on the
default network, and the clean-up: every pod stopped with ``rkt-sim stop --force``, any
process still holding the store killed, the directories removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("bench.simnode")

IMAGE_NAME = "bench.rktoperator.io/busybox-sleep"
IMAGE_VERSION = "1.0.0"


def service_spec(image: str) -> dict[str, Any]:
    """The RktTask spec of every benchmark task (``nodeName`` is added per batch)."""
    return {
        "image": image,
        "command": "/bin/sleep",
        "args": ["3600"],
        "net": ["default"],
        "restartPolicy": "Never",
    }


class SimNode:
    """One node's simulator store under ``root`` (removed by :meth:`cleanup`)."""

    def __init__(self, root: Path, *, rkt_sim: Path) -> None:
        self.root = root
        self.rkt_sim = rkt_sim
        self.rkt_dir = root / "rkt"
        self.local_config = root / "etc-rkt"
        self.task_root = root / "tasks"

    @property
    def marker(self) -> str:
        """A fragment of the command line of every process that belongs to this node's
        pods: the node's directory (pod supervisors name the task root, rkt the store)."""
        return str(self.root) + "/"

    def _rkt(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        argv = [
            str(self.rkt_sim),
            f"--dir={self.rkt_dir}",
            f"--local-config={self.local_config}",
            *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def prepare(self) -> dict[str, Any]:
        """Create the store, build and fetch the image; the task spec that runs it."""
        from rkt_devkit.aci import build_aci

        for path in (self.rkt_dir, self.local_config, self.task_root):
            path.mkdir(parents=True, exist_ok=True)
        aci = build_aci(
            self.root / "busybox-sleep.aci",
            name=IMAGE_NAME,
            version=IMAGE_VERSION,
            exec=["/bin/sleep", "3600"],
        )
        done = self._rkt("--insecure-options=image", "fetch", str(aci))
        if done.returncode != 0:
            raise RuntimeError(f"rkt-sim fetch {aci} failed ({done.returncode}): {done.stderr}")
        return service_spec(f"{IMAGE_NAME}:{IMAGE_VERSION}")

    def pods(self) -> list[tuple[str, str]]:
        """(UUID, state) of every pod in the store, from ``rkt list --format=json``."""
        done = self._rkt("list", "--format=json")
        try:
            listed = json.loads(done.stdout or "null") or []
        except ValueError:
            return []
        return [
            (str(p["name"]), str(p.get("state", "")))
            for p in listed
            if isinstance(p, dict) and "name" in p
        ]

    def processes(self) -> list[psutil.Process]:
        """Every live process whose command line names this node's directory, and their
        descendants (a pod's app processes)."""
        marker = self.marker
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if any(marker in arg for arg in cmdline):
                found[proc.pid] = proc
                with contextlib.suppress(psutil.Error):
                    found.update((c.pid, c) for c in proc.children(recursive=True))
        return list(found.values())

    def cleanup(self, grace: float = 10.0) -> None:
        """Stop every pod (force), kill what still runs from the store, remove the node."""
        if self.rkt_dir.exists():
            running = [uuid for uuid, state in self.pods() if state == "running"]
            for start in range(0, len(running), 50):
                self._rkt("stop", "--force", *running[start : start + 50])
            deadline = time.monotonic() + grace
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.2)
            for proc in self.processes():
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGKILL)
            self._rkt("gc", "--grace-period=0s")
        shutil.rmtree(self.root, ignore_errors=True)
