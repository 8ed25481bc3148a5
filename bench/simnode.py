"""The benchmark's node: an rkt store (``rkt-sim``, or real rkt with ``--real``) holding a
long-running busybox image, and a counting wrapper in front of the rkt binary.

Owns the node's directories (rkt ``--dir``, ``--local-config``, the agent's task root), the
test image (an ACI built with ``rkt_devkit.aci`` whose app runs ``sleep 3600``,
fetched into the store so no task downloads anything), the RktTask spec that runs it on the
default network, the wrapper ``<root>/bin/rkt`` (a two-line ``sh`` script that appends the
subcommand of every invocation to ``<root>/rkt-calls.log`` and ``exec``s the real binary: the
controller under test and its pod supervisors are given the wrapper as their rkt, so every
rkt invocation by command is counted, whoever runs it), and the clean-up: every pod stopped
with ``rkt stop --force`` (retried: real rkt refuses a stop before the pod's pid is
written), any process still holding the store killed, every pod removed with ``rkt rm`` and
``rkt gc`` (with real rkt this also removes its veths, network namespaces, iptables chains
and overlay mounts), any mount left under the node lazily unmounted, the directories
removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
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


_WRAPPER = """#!/bin/sh
for a do case $a in -*) ;; *) echo "$a" >>{log}; break;; esac; done
exec {real} "$@"
"""


class SimNode:
    """One node's rkt store under ``root`` (removed by :meth:`cleanup`): ``rkt_sim`` is the
    rkt binary (the simulator, or real rkt when ``real``)."""

    def __init__(
        self, root: Path, *, rkt_sim: Path, real: bool = False, env: dict[str, str] | None = None
    ) -> None:
        self.env = {**os.environ, **(env or {})}  # real rkt: PATH with the nspawn wrapper
        self.root = root
        self.rkt_sim = rkt_sim
        self.real = real
        self.rkt_dir = root / "rkt"
        self.local_config = root / "etc-rkt"
        self.task_root = root / "tasks"
        self.calls_log = root / "rkt-calls.log"
        self.rkt_path = root / "bin" / "rkt"

    def write_wrapper(self) -> None:
        """The counting wrapper ``bin/rkt`` in front of the rkt binary (paths without quotes
        or spaces: the benchmark's own temporary directories)."""
        self.rkt_path.parent.mkdir(parents=True, exist_ok=True)
        self.rkt_path.write_text(_WRAPPER.format(log=self.calls_log, real=self.rkt_sim))
        self.rkt_path.chmod(0o755)

    def calls(self) -> Counter[str]:
        """rkt invocations so far through the wrapper, by subcommand."""
        try:
            return Counter(self.calls_log.read_text().split())
        except OSError:
            return Counter()

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
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=self.env
        )

    def prepare(self) -> dict[str, Any]:
        """Create the store, build and fetch the image; the task spec that runs it."""
        from rkt_devkit.aci import build_aci

        for path in (self.rkt_dir, self.local_config, self.task_root):
            path.mkdir(parents=True, exist_ok=True)
        self.write_wrapper()
        aci = build_aci(
            self.root / "busybox-sleep.aci",
            name=IMAGE_NAME,
            version=IMAGE_VERSION,
            exec=["/bin/sleep", "3600"],
        )
        done = self._rkt("--insecure-options=image", "fetch", str(aci))
        if done.returncode != 0:
            raise RuntimeError(f"rkt fetch {aci} failed ({done.returncode}): {done.stderr}")
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
        """Stop every pod (force), kill what still runs from the store, remove every pod
        (real rkt: with its network and mounts), unmount leftovers, remove the node."""
        if self.rkt_dir.exists():
            deadline = time.monotonic() + (60.0 if self.real else grace)
            while True:
                running = [uuid for uuid, state in self.pods() if state == "running"]
                if not running or time.monotonic() > deadline:
                    break
                for start in range(0, len(running), 50):
                    self._rkt("stop", "--force", *running[start : start + 50])
                time.sleep(0.5)  # real rkt: a pod whose pid is not written yet refuses
            deadline = time.monotonic() + grace
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.2)
            for proc in self.processes():
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGKILL)
            for uuid, _state in self.pods():
                self._rkt("rm", uuid)
            self._rkt("gc", "--grace-period=0s")
            left = self.pods()
            if left:
                log.warning("pods left after rm and gc: %s", left)
        self._unmount()
        shutil.rmtree(self.root, ignore_errors=True)

    def _unmount(self) -> None:
        """Lazily unmount whatever is still mounted under the node (deepest first)."""
        prefix = str(self.root.resolve()) + "/"
        try:
            lines = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return
        points = [ln.split()[4] for ln in lines if len(ln.split()) > 4]
        for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            log.warning("unmounting a leftover mount %s", point)
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
