"""Observation during a benchmark phase: when each task appeared and became Running, and how
much memory the controller and the pods it started use.

:class:`TaskWatch` lists and watches one batch of RktTasks (a label the benchmark puts on
them) with the kubernetes client in a thread, and notes, on one monotonic clock, when it
first saw each object (the apply time) and when it first saw it Running. :class:`RssSampler`
samples resident memory in a thread: the controller process alone, and separately every
process that belongs to the node's rkt store (found by a marker in the command line, plus
their descendants), summed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psutil
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger("bench.observe")

GROUP, VERSION, PLURAL = "rktoperator.io", "v1alpha1", "rkttasks"


def is_running(obj: dict[str, Any]) -> bool:
    """The task reports a running pod: ``phase: Running`` or a ``Ready=True`` condition."""
    status = obj.get("status") or {}
    if status.get("phase") == "Running":
        return True
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class TaskTimes:
    added: float | None = None  # monotonic seconds when the watch first saw the object
    running: float | None = None  # ... and when it first saw it Running
    started_at: str | None = None  # status.startedAt as the controller wrote it


@dataclass
class TaskWatch:
    """Records per-task times for the RktTasks in ``namespace`` matching ``label_selector``."""

    api: client.ApiClient
    namespace: str
    label_selector: str
    tasks: dict[str, TaskTimes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start watching; returns once the initial list is done (the watch is open)."""
        self._thread = threading.Thread(target=self._run, name="task-watch", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the RktTask watch did not start within {timeout:.0f}s")
        if self.error is not None:
            raise RuntimeError(f"the RktTask watch failed: {self.error}") from self.error

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def counts(self) -> tuple[int, int]:
        """(objects seen, objects seen Running)."""
        with self._lock:
            seen = len(self.tasks)
            running = sum(1 for t in self.tasks.values() if t.running is not None)
        return seen, running

    def wait_running(self, expected: int, deadline: float) -> bool:
        """Block until ``expected`` tasks were seen Running or the monotonic ``deadline``."""
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"the RktTask watch failed: {self.error}") from self.error
            if self.counts()[1] >= expected:
                return True
            time.sleep(0.1)
        return self.counts()[1] >= expected

    def _note(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            times = self.tasks.setdefault(name, TaskTimes())
            if times.added is None:
                times.added = now
            if times.running is None and is_running(obj):
                times.running = now
                times.started_at = (obj.get("status") or {}).get("startedAt")

    def _run(self) -> None:
        api = client.CustomObjectsApi(self.api)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listing = cast(
                        dict[str, Any],
                        api.list_namespaced_custom_object(
                            GROUP,
                            VERSION,
                            self.namespace,
                            PLURAL,
                            label_selector=self.label_selector,
                        ),
                    )
                    now = time.monotonic()
                    for obj in listing["items"]:
                        self._note(obj, now)
                    version = listing["metadata"]["resourceVersion"]
                    self._ready.set()
                version = self._watch_once(api, version)
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list again
                    version = ""
                    continue
                self._fail(exc)
                return
            except (HTTPError, OSError) as exc:  # a dropped connection: resume the watch
                log.debug("watch interrupted, resuming: %s", exc)
                time.sleep(0.2)
            except Exception as exc:  # noqa: BLE001 - reported to the main thread
                self._fail(exc)
                return

    def _watch_once(self, api: client.CustomObjectsApi, version: str) -> str:
        """One watch request (ends after a few seconds so that ``stop()`` is honoured)."""
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        events: Iterable[dict[str, Any]] = stream.stream(  # type: ignore[no-untyped-call]
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            label_selector=self.label_selector,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
        )
        for event in events:
            obj = event["object"]
            if event["type"] == "ERROR":
                code = obj.get("code") if isinstance(obj, dict) else None
                raise ApiException(status=code or 500, reason=str(obj))
            version = obj["metadata"]["resourceVersion"]
            if event["type"] in ("ADDED", "MODIFIED"):
                self._note(obj, time.monotonic())
            if self._stop.is_set():
                stream.stop()  # type: ignore[no-untyped-call]
        return version

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self._ready.set()


@dataclass
class RssSampler:
    """Peak RSS of ``pid`` alone, and of the processes whose command line holds ``marker``
    (with all their descendants, ``pid`` excluded), summed per sample."""

    pid: int
    marker: str | None = None
    interval: float = 1.0
    peak_controller: int = 0
    peak_pods: int = 0
    pods_seen: int = 0  # the most pod processes seen in one sample
    last_pods: frozenset[int] = frozenset()
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        rss: dict[int, int] = {}
        children: dict[int, list[int]] = {}
        roots: list[int] = []
        for proc in psutil.process_iter(["ppid", "cmdline", "memory_info"]):
            info = proc.info
            memory = info.get("memory_info")
            if memory is None:  # gone or not ours to read
                continue
            rss[proc.pid] = int(memory.rss)
            children.setdefault(int(info.get("ppid") or 0), []).append(proc.pid)
            cmdline = info.get("cmdline") or []
            if self.marker and proc.pid != self.pid and any(self.marker in a for a in cmdline):
                roots.append(proc.pid)
        self.peak_controller = max(self.peak_controller, rss.get(self.pid, 0))
        if self.marker is None:
            return
        pods: set[int] = set()
        todo = roots + children.get(self.pid, [])
        while todo:
            pid = todo.pop()
            if pid in pods or pid == self.pid:
                continue
            pods.add(pid)
            todo.extend(children.get(pid, []))
        self.pods_seen = max(self.pods_seen, len(pods))
        self.peak_pods = max(self.peak_pods, sum(rss[p] for p in pods))
        self.last_pods = frozenset(pods)

    def pods_pss(self) -> int:
        """Proportional set size of the pod processes of the last sample, summed: each
        shared page counted once across them (unlike RSS), so forked supervisors are not
        counted several times. Slow (a few ms per process): call it once, at the end."""
        total = 0
        for pid in self.last_pods:
            total += _pss(pid)
        return total


def _pss(pid: int) -> int:
    """``Pss`` of ``/proc/<pid>/smaps_rollup`` in bytes (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far, its reaped children's included (for the
    agent: the rkt commands it ran; not the pods, which outlive it)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system + t.children_user + t.children_system)


def peak_rss(pid: int) -> int | None:
    """The highest RSS of ``pid`` since it started, in bytes (the kernel's ``VmHWM``): the
    high-water mark of a burst, read once, with no sampling."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def own_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` alone (its children excluded): the controller's own
    work, without the rkt commands it ran."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)
