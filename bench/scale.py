"""``bench_agent.py --scale``: the agent with many tasks on one node.

Sequence: one agent on a fresh node; ``--tasks`` tasks applied at once, ``--running`` of them
services (``sleep 3600``) and the rest run-once tasks that exit 0 at once (their pods stay,
exited, in ``rkt list`` as on a real node); wait until every service is Running and every
run-once task Succeeded. Then:

1. **idle**: writes settled, one ``--idle`` window (default 60 s) with nothing changing:
   the agent's RSS, its CPU (own, and with the rkt commands it ran), API writes and rkt
   invocations by command, all per minute;
2. **restart**: the agent is stopped (SIGTERM) and started again; each task is
   *re-confirmed* when the new agent's log shows kopf's ``Handler 'create' succeeded`` (or
   ``'resume'``) for it (that handler is the agent's reconcile: it has observed the task's pod and
   written the status if it changed). Reported: seconds from the new agent's start until
   every task was re-confirmed, writes and rkt invocations of the restart, then duplicates
   (tasks with more than one live pod in ``rkt list``) and tasks no longer Running or
   Succeeded.

Figures only; nothing passes or fails on them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from apimetrics import WriteKey, write_delta
from controllers import Controller
from observe import RssSampler, TaskWatch, cpu_seconds, own_cpu_seconds, peak_rss
from phase import BATCH_LABEL, quiet_writes, task_manifest
from report import MIB
from simnode import SimNode

log = logging.getLogger("bench.scale")

# Seconds between the writes settling and the idle window: more than the agent's quiet
# period before it gives a burst's memory back (``memtrim.TrimPolicy.quiet``, 10 s).
SETTLE_SECONDS = 15.0
MIB_PER_POD = 25  # PSS of one simulated pod (its supervisor, rkt-sim stage1 and app), measured
# A restarted agent remembers no handled spec (kopf's diff-base is in its memory), so kopf
# calls the create handler; a kopf run restarted in the same process calls resume. Both are
# the agent's reconcile.
_RESUMED = re.compile(r"object=(\S+) msg=\"Handler '(?:create|resume)' succeeded")
_RESUME_FAILED = re.compile(r"object=(\S+) msg=\"Handler '(?:create|resume)' failed")
GROUP, VERSION, PLURAL = "rktoperator.io", "v1alpha1", "rkttasks"


@dataclass
class ScaleResult:
    tasks: int
    running: int
    up_seconds: float = 0.0
    up_done: int = 0
    up_peak_rss_mib: float | None = None  # the agent's high-water mark during the bring-up
    settle_seconds: float = 0.0
    idle_seconds: float = 0.0
    idle_rss_mib: float = 0.0
    idle_cpu_own: float | None = None
    idle_cpu_all: float | None = None
    idle_writes: dict[WriteKey, int] = field(default_factory=dict)
    idle_calls: Counter[str] = field(default_factory=Counter)
    restart_confirmed: int = 0
    restart_seconds: float | None = None
    restart_first: float | None = None
    restart_up: float | None = None  # when the new agent logged "agent started"
    restart_failed: int = 0
    restart_writes: dict[WriteKey, int] = field(default_factory=dict)
    restart_calls: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    live_pods: int = 0
    not_ok: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _per_minute(value: float | None, seconds: float) -> str:
    if value is None or seconds <= 0:
        return "-"
    return f"{value * 60.0 / seconds:.2f}"


def render(result: ScaleResult, header: str) -> str:
    r = result
    idle_writes = sum(r.idle_writes.values())
    lines = [
        header,
        "",
        f"tasks: {r.tasks} ({r.running} services Running, {r.tasks - r.running} run-once "
        f"Succeeded); all up after {r.up_seconds:.0f} s ({r.up_done}/{r.tasks})",
        "  agent RSS, peak of the bring-up   "
        + ("-" if r.up_peak_rss_mib is None else f"{r.up_peak_rss_mib:.1f} MiB")
        + " (VmHWM once all were up)",
        f"idle ({r.idle_seconds:.0f} s window, resync of every task; it begins "
        f"{r.settle_seconds:.0f} s after the writes settled):",
        f"  agent RSS                         {r.idle_rss_mib:.1f} MiB (highest sample)",
        f"  agent CPU, own process            {_per_minute(r.idle_cpu_own, r.idle_seconds)}"
        " s per minute",
        f"  agent CPU, with its rkt commands  {_per_minute(r.idle_cpu_all, r.idle_seconds)}"
        " s per minute",
        f"  API writes                        {idle_writes} "
        f"({', '.join(f'{k} {v}' for k, v in r.idle_writes.items()) or 'none'})",
        f"  rkt invocations per minute        "
        f"{_per_minute(float(sum(r.idle_calls.values())), r.idle_seconds)} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(r.idle_calls.items())) or 'none'})",
        "agent restart:",
        f"  tasks re-confirmed                {r.restart_confirmed}/{r.tasks}"
        + (f", {r.restart_failed} resume failures" if r.restart_failed else ""),
        "  all re-confirmed after            "
        + ("-" if r.restart_seconds is None else f"{r.restart_seconds:.1f} s")
        + " from the new agent's process start"
        + ("" if r.restart_first is None else f" (first after {r.restart_first:.1f} s)"),
        "  of which the agent's own start-up "
        + ("-" if r.restart_up is None else f"{r.restart_up:.1f} s")
        + " (process start to its 'agent started' log line: imports, settings, rkt check)",
        f"  API writes                        {sum(r.restart_writes.values())} "
        f"({', '.join(f'{k} {v}' for k, v in r.restart_writes.items()) or 'none'})",
        f"  rkt invocations                   {sum(r.restart_calls.values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(r.restart_calls.items())) or 'none'})",
        f"  duplicate pods                    {r.duplicates} "
        f"(live pods {r.live_pods} for {r.running} services)",
        f"  tasks not Running/Succeeded after {len(r.not_ok)}"
        + (f": {', '.join(r.not_ok[:5])}" if r.not_ok else ""),
    ]
    lines.extend(f"note: {n}" for n in r.notes)
    return "\n".join(lines)


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def check_memory(running: int, real: bool) -> None:
    """Refuse a run whose simulated pods would not fit in memory (with 4 GiB to spare)."""
    if real:
        return
    need = running * MIB_PER_POD * MIB
    have = _mem_available() - 4 * 1024 * MIB
    if need > have:
        raise SystemExit(
            f"--scale: {running} running simulated pods need about {need // MIB} MiB, "
            f"{max(0, have) // MIB} MiB are available (4 GiB kept free): lower --running"
        )


def _confirmations(path: Path, offset: int) -> tuple[int, set[str], int, bool]:
    """From ``offset`` on in the agent's log: the new offset, the tasks whose resume
    handler succeeded, how many resumes failed, whether the agent logged its start."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return offset, set(), 0, False
    data = data[: data.rfind(b"\n") + 1]
    text = data.decode("utf-8", "replace")
    done = set(_RESUMED.findall(text))
    failed = len(_RESUME_FAILED.findall(text))
    return offset + len(data), done, failed, 'msg="agent started' in text


def _live_pods(node: SimNode) -> tuple[int, int]:
    """(live pods, tasks with more than one live pod) from ``rkt list``."""
    done = node._rkt("list", "--format=json")
    try:
        listed = json.loads(done.stdout or "null") or []
    except ValueError:
        return 0, 0
    per_uid: Counter[str] = Counter()
    for pod in listed:
        if not isinstance(pod, dict) or pod.get("state") not in ("running", "prepared"):
            continue
        ann = pod.get("user_annotations")
        uid = ann.get("rktoperator.io/uid") if isinstance(ann, dict) else None
        per_uid[str(uid or pod.get("name"))] += 1
    return sum(per_uid.values()), sum(1 for n in per_uid.values() if n > 1)


def run_scale(
    *,
    make_agent: Callable[[str], Controller],
    node: SimNode,
    api: client.ApiClient,
    kubectl: Callable[..., Any],
    metrics: Callable[[], str],
    workdir: Path,
    namespace: str,
    node_name: str,
    spec: Mapping[str, Any],
    tasks: int,
    running: int,
    idle: float,
    timeout: float,
    settle: float = SETTLE_SECONDS,
) -> ScaleResult:
    result = ScaleResult(tasks=tasks, running=running)
    workdir.mkdir(parents=True, exist_ok=True)
    batch = "scale"
    services = [f"scale-s-{i:04d}" for i in range(running)]
    once = [f"scale-o-{i:04d}" for i in range(tasks - running)]
    once_spec = {**spec, "args": ["0"], "restartPolicy": "Never"}
    manifest = workdir / "scale.yaml"
    docs = task_manifest(services, namespace=namespace, node=node_name, batch=batch, spec=spec)
    if once:
        docs += "---\n" + task_manifest(
            once, namespace=namespace, node=node_name, batch=batch, spec=once_spec
        )
    manifest.write_text(docs)

    agent = make_agent("agent.log")
    agent.start()
    watch = TaskWatch(api, namespace, f"{BATCH_LABEL}={batch}")
    watch.start()
    try:
        started = time.monotonic()
        log.info("scale: applying %d tasks (%d services)", tasks, running)
        kubectl("apply", "-f", str(manifest), timeout=600.0)
        deadline = started + timeout
        while time.monotonic() < deadline:
            agent.check_alive()
            if watch.wait_running(tasks, min(deadline, time.monotonic() + 5.0)):
                break
            log.info("scale: %d of %d up", watch.counts()[1], tasks)
        result.up_done = watch.counts()[1]
        result.up_seconds = time.monotonic() - started
        if result.up_done < tasks:
            result.notes.append(f"only {result.up_done} of {tasks} tasks up after {timeout:.0f}s")

        hwm = peak_rss(agent.pid)
        result.up_peak_rss_mib = None if hwm is None else hwm / MIB

        # 1. Idle.
        log.info("scale: all up after %.0fs; waiting for the writes to settle", result.up_seconds)
        _, quiet = quiet_writes(metrics, interval=2.0, limit=60.0)
        if not quiet:
            result.notes.append("writes had not settled 60 s after the tasks were up")
        # The agent gives a burst's memory back once it has been quiet for 10 s (memtrim);
        # the idle window measures the node at rest, so it begins after that.
        result.settle_seconds = settle
        time.sleep(settle)
        before, _ = quiet_writes(metrics, interval=0.1, limit=0.2)
        sampler = RssSampler(agent.pid)
        sampler.start()
        calls0, own0, all0 = node.calls(), own_cpu_seconds(agent.pid), cpu_seconds(agent.pid)
        t0 = time.monotonic()
        time.sleep(idle)
        agent.check_alive()
        calls1, own1, all1 = node.calls(), own_cpu_seconds(agent.pid), cpu_seconds(agent.pid)
        result.idle_seconds = time.monotonic() - t0
        after, _ = quiet_writes(metrics, interval=0.1, limit=0.2)
        sampler.stop()
        result.idle_rss_mib = sampler.peak_controller / MIB
        result.idle_writes = write_delta(before, after)
        result.idle_calls = calls1 - calls0
        result.idle_cpu_own = None if own0 is None or own1 is None else own1 - own0
        result.idle_cpu_all = None if all0 is None or all1 is None else all1 - all0

        # 2. Restart.
        log.info("scale: restarting the agent")
        agent.stop()
        calls0 = node.calls()
        before, _ = quiet_writes(metrics, interval=0.1, limit=0.2)
        again = make_agent("agent-restarted.log")
        again.log.write_bytes(b"")
        again.start()
        t0 = time.monotonic()
        offset, confirmed, failed = 0, set[str](), 0
        while time.monotonic() - t0 < 120.0 and len(confirmed) < tasks:
            again.check_alive()
            offset, found, failures, up = _confirmations(again.log, offset)
            now = time.monotonic() - t0
            if up and result.restart_up is None:
                result.restart_up = now
            if found and result.restart_first is None:
                result.restart_first = now
            confirmed |= found
            failed += failures
            if len(confirmed) >= tasks:
                result.restart_seconds = now
                break
            time.sleep(0.1)
        result.restart_confirmed = len(confirmed)
        result.restart_failed = failed
        after, quiet = quiet_writes(metrics, interval=2.0, limit=30.0)
        result.restart_writes = write_delta(before, after)
        result.restart_calls = node.calls() - calls0
        result.live_pods, result.duplicates = _live_pods(node)
        listing = cast(
            dict[str, Any],
            client.CustomObjectsApi(api).list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, label_selector=f"{BATCH_LABEL}={batch}"
            ),
        )
        for obj in listing["items"]:
            phase = (obj.get("status") or {}).get("phase")
            want = "Running" if obj["metadata"]["name"].startswith("scale-s-") else "Succeeded"
            if phase != want:
                result.not_ok.append(f"{obj['metadata']['name']}={phase}")
    finally:
        watch.stop()
        for controller in (agent, *([again] if "again" in locals() else [])):
            controller.stop()
    return result
