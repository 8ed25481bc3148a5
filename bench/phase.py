"""One benchmark phase: a controller, a fresh batch of N tasks for its node, the figures.

Sequence: start the controller; bring one warm-up task to Running (proves the controller
watches and works, and keeps its start-up out of the figures); wait until the API server's
write counters are quiet; then, with the task watch and the RSS sampler running, apply the
N tasks in one ``kubectl apply -f`` of a multi-document file, wait until all are Running (or
the timeout), wait for the write counters to be quiet again, and stop the controller.
Phases run one after the other so that each write delta belongs to one controller.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client

from apimetrics import WriteKey, parse_writes, write_delta
from controllers import Controller
from observe import RssSampler, TaskWatch, cpu_seconds, own_cpu_seconds
from report import MIB, PhaseResult

log = logging.getLogger("bench.phase")

BATCH_LABEL = "bench.rktoperator.io/batch"
NODE_LABEL = "rktoperator.io/node"
# What the figures count: the tasks (and their status subresource) and events of any group.
COUNTED = frozenset({"rkttasks", "events"})

Kubectl = Callable[..., Any]


def task_manifest(
    names: list[str], *, namespace: str, node: str, batch: str, spec: Mapping[str, Any]
) -> str:
    """A multi-document YAML stream (JSON documents, which YAML accepts) of RktTasks."""
    docs = []
    for name in names:
        body = {
            "apiVersion": "rktoperator.io/v1alpha1",
            "kind": "RktTask",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {BATCH_LABEL: batch, NODE_LABEL: node},
            },
            "spec": {**spec, "nodeName": node},
        }
        docs.append(json.dumps(body))
    return "\n---\n".join(docs) + "\n"


def quiet_writes(
    metrics: Callable[[], str], *, interval: float = 1.0, limit: float = 15.0
) -> tuple[Counter[WriteKey], bool]:
    """Scrape until the counted writes stop moving (two equal scrapes ``interval`` apart) or
    ``limit`` seconds pass. Returns the last scrape and whether it was quiet."""
    deadline = time.monotonic() + limit
    last = parse_writes(metrics(), COUNTED)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = parse_writes(metrics(), COUNTED)
        if now == last:
            return now, True
        last = now
    return last, False


def _wait(controller: Controller, watch: TaskWatch, expected: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        controller.check_alive()
        if watch.wait_running(expected, min(deadline, time.monotonic() + 1.0)):
            return True
    return False


def run_phase(
    controller: Controller,
    *,
    api: client.ApiClient,
    kubectl: Kubectl,
    metrics: Callable[[], str],
    workdir: Path,
    namespace: str,
    tasks: int,
    spec: Mapping[str, Any],
    timeout: float,
    warmup_timeout: float = 180.0,
    rkt_calls: Callable[[], Counter[str]] | None = None,
) -> PhaseResult:
    """Measure ``controller`` on ``tasks`` new tasks for its node; stops it at the end.
    ``rkt_calls`` (if any) counts the rkt invocations of its node so far, by command."""
    name = controller.name
    workdir.mkdir(parents=True, exist_ok=True)
    controller.start()
    notes: list[str] = []
    try:
        # Warm-up: one task, its own batch label.
        warm = TaskWatch(api, namespace, f"{BATCH_LABEL}={name}-warmup")
        warm.start()
        warm_file = workdir / f"{name}-warmup.yaml"
        warm_file.write_text(
            task_manifest(
                [f"{name}-warmup"],
                namespace=namespace,
                node=controller.node,
                batch=f"{name}-warmup",
                spec=spec,
            )
        )
        kubectl("apply", "-f", str(warm_file))
        try:
            if not _wait(controller, warm, 1, time.monotonic() + warmup_timeout):
                raise RuntimeError(
                    f"{name}: the warm-up task was not Running after {warmup_timeout:.0f}s; "
                    f"last lines of {controller.log}:\n{controller.log_tail()}"
                )
        finally:
            warm.stop()
        log.info("%s: warm-up task Running", name)
        before, quiet = quiet_writes(metrics)
        if not quiet:
            notes.append("writes had not settled after the warm-up")

        names = [f"{name}-{i:04d}" for i in range(tasks)]
        batch_file = workdir / f"{name}-batch.yaml"
        batch_file.write_text(
            task_manifest(names, namespace=namespace, node=controller.node, batch=name, spec=spec)
        )
        watch = TaskWatch(api, namespace, f"{BATCH_LABEL}={name}")
        watch.start()
        sampler = RssSampler(controller.pid, controller.marker)
        sampler.start()
        cpu_before = cpu_seconds(controller.pid)
        own_before = own_cpu_seconds(controller.pid)
        calls_before = rkt_calls() if rkt_calls else None
        try:
            log.info("%s: applying %d tasks", name, tasks)
            kubectl("apply", "-f", str(batch_file), timeout=max(120.0, timeout))
            if not _wait(controller, watch, tasks, time.monotonic() + timeout):
                seen, running = watch.counts()
                notes.append(f"timeout after {timeout:.0f}s: {running} of {seen} tasks Running")
            sampler.sample()
            pods_pss = sampler.pods_pss() if controller.marker else None
            log.info("%s: batch done, waiting for the writes to settle", name)
            after, quiet = quiet_writes(metrics)
            if not quiet:
                notes.append("writes were still going on 15 s after the last task ran")
            cpu_after = cpu_seconds(controller.pid)
            own_after = own_cpu_seconds(controller.pid)
            calls = rkt_calls() - calls_before if rkt_calls and calls_before is not None else None
        finally:
            sampler.stop()
            watch.stop()
    finally:
        log.info("%s: stopping", name)
        controller.stop()
        log.info("%s: stopped", name)

    latencies: list[float] = []
    first, last = float("inf"), 0.0
    for t in watch.tasks.values():
        if t.added is None:
            continue
        first = min(first, t.added)
        if t.running is not None:
            latencies.append(t.running - t.added)
            last = max(last, t.running)
    writes = write_delta(before, after)
    creates = writes.get(WriteKey("POST", "rkttasks"), 0)
    if creates != tasks:
        notes.append(f"expected {tasks} task creates, the API server counted {creates}")
    result = PhaseResult(
        name=name,
        tasks=tasks,
        latencies=latencies,
        wall_seconds=max(0.0, last - first),
        writes=writes,
        bench_writes=tasks,
        peak_rss=sampler.peak_controller,
        pods_pss=pods_pss,
        peak_rss_pods=sampler.peak_pods if controller.marker else None,
        cpu_seconds=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        cpu_own_seconds=None if own_before is None or own_after is None else own_after - own_before,
        rkt_calls=None if calls is None else dict(sorted(calls.items())),
        notes=notes,
    )
    if controller.marker:
        result.notes.append(
            f"rkt pod processes: at most {sampler.pods_seen} at once; their summed RSS peaked "
            f"at {sampler.peak_pods / MIB:.0f} MiB (RSS counts shared pages in every process)"
        )
    return result
