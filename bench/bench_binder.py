"""Benchmark of the binder (``rkt-operator schedule``) on a real local control plane.

Starts etcd and kube-apiserver, installs the CRD, creates Node objects (Ready, allocatable set
through the status subresource, the ``rktoperator.io/rkt=true`` label an agent would publish),
starts one binder, then creates N unbound tasks from several threads at once (concurrent
applies) while a watch records, for every task, when its create returned and when it was
first seen bound. Prints one row: binds per second (N / time from the first to the last
bind) and apply->bound latency (p50 / p95 / max), plus whether any node ended above its
allocatable. Figures are printed, never asserted.

    export $(bash .ci/testbin.sh | tail -1)
    .venv/bin/python bench/bench_binder.py --tasks 500 --nodes 5 [--strategy binpack]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from rkt_devkit.controlplane import ControlPlane
from rkt_operator.model.quantity import parse_quantity

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-binder"
GROUP, VERSION, PLURAL = "rktoperator.io", "v1alpha1", "rkttasks"
VENV_BIN = Path(sys.executable).parent
TASK_MEMORY, TASK_CPU = "64Mi", "50m"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--strategy", choices=("spread", "binpack"), default="spread")
    parser.add_argument("--writers", type=int, default=4, help="threads creating tasks")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--assets", type=Path, default=Path(os.environ.get("KUBEBUILDER_ASSETS", ""))
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write JSON here")
    return parser.parse_args(argv)


def _nodes(plane: ControlPlane, count: int, tasks: int) -> list[str]:
    """Nodes with room for all tasks plus a margin (capacity is checked, not the limit)."""
    per_node = -(-tasks // count) + 10
    memory = f"{per_node * 64}Mi"
    cpu = f"{per_node * 50}m"
    names = [f"bench-binder-{i}" for i in range(count)]
    for name in names:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"rktoperator.io/rkt": "true"}},
        }
        plane.kubectl("create", "-f", "-", input=json.dumps(body))
        status = {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Bench", "message": ""}],
            "allocatable": {"memory": memory, "cpu": cpu},
            "capacity": {"memory": memory, "cpu": cpu},
        }
        plane.kubectl(
            "patch", "node", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip
        plane.kubectl("patch", "node", name, "--type=merge", "-p", '{"spec": {"taints": []}}')
    return names


def _task(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RktTask",
        "metadata": {"name": name},
        "spec": {
            "image": "example.com/app:1.0",
            "resources": {"limits": {"memory": TASK_MEMORY, "cpu": TASK_CPU}},
        },
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with ControlPlane(args.assets, base_dir=workdir) as plane:
        plane.apply_crds(REPO / "crds")
        plane.kubectl("create", "namespace", NAMESPACE)
        nodes = _nodes(plane, args.nodes, args.tasks)
        api = plane.api_client()
        custom = client.CustomObjectsApi(api)
        created: dict[str, float] = {}
        bound: dict[str, tuple[float, str]] = {}
        done = threading.Event()
        watching = threading.Event()

        def observe() -> None:
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            watching.set()
            for event in stream.stream(  # type: ignore[no-untyped-call]
                custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL,
                timeout_seconds=int(args.timeout),
            ):  # fmt: skip
                obj = event["object"]
                node = (obj.get("spec") or {}).get("nodeName")
                name = obj["metadata"]["name"]
                if node and name not in bound:
                    bound[name] = (time.monotonic(), node)
                    if len(bound) >= args.tasks:
                        stream.stop()  # type: ignore[no-untyped-call]
            done.set()

        watcher = threading.Thread(target=observe, daemon=True)
        watcher.start()
        watching.wait()
        log = (workdir / "binder.log").open("wb")
        binder = subprocess.Popen(
            [
                str(VENV_BIN / "rkt-operator"), "schedule",
                f"--kubeconfig={plane.kubeconfig}", f"--lease-namespace={NAMESPACE}",
                "--identity=bench", f"--strategy={args.strategy}", "--log-level=WARNING",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            time.sleep(2.0)  # let it take the Lease: time to bind, not time to elect

            def create(index: int) -> None:
                name = f"t{index:04d}"
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, _task(name)
                )
                created[name] = time.monotonic()

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.writers) as pool:
                list(pool.map(create, range(args.tasks)))
            applied = time.monotonic() - started
            done.wait(timeout=args.timeout)
        finally:
            binder.send_signal(signal.SIGTERM)
            binder.wait(timeout=30)
            log.close()
        listed: Any = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        items = listed["items"]
        used: dict[str, Fraction] = Counter()  # type: ignore[assignment]
        for item in items:
            node = (item.get("spec") or {}).get("nodeName")
            if node:
                used[node] += parse_quantity(TASK_MEMORY)
        allocatable = parse_quantity(f"{(-(-args.tasks // args.nodes) + 10) * 64}Mi")
        over = sorted(n for n, amount in used.items() if amount > allocatable)
        latencies = [bound[n][0] - created[n] for n in bound if n in created]
        times = sorted(t for t, _ in bound.values())
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        per_node = Counter(node for _, node in bound.values())
        api.close()  # type: ignore[no-untyped-call]
    return {
        "tasks": args.tasks,
        "nodes": len(nodes),
        "strategy": args.strategy,
        "bound": len(bound),
        "apply_seconds": applied,
        "binds_per_second": (len(times) - 1) / span if span == span and span > 0 else None,
        "apply_to_bound_p50": statistics.median(latencies) if latencies else None,
        "apply_to_bound_p95": _percentile(latencies, 0.95) if latencies else None,
        "apply_to_bound_max": max(latencies) if latencies else None,
        "per_node": dict(sorted(per_node.items())),
        "nodes_over_capacity": over,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def render(result: dict[str, Any]) -> str:
    def sec(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    rate = result["binds_per_second"]
    header = (
        "| tasks | nodes | strategy | bound | binds/s | apply->bound p50 | p95 | max "
        "| over capacity |"
    )
    row = (
        f"| {result['tasks']} | {result['nodes']} | {result['strategy']} | {result['bound']} "
        f"| {'-' if rate is None else f'{rate:.1f}'} | {sec(result['apply_to_bound_p50'])} "
        f"| {sec(result['apply_to_bound_p95'])} | {sec(result['apply_to_bound_max'])} "
        f"| {', '.join(result['nodes_over_capacity']) or 'none'} |"
    )
    lines = [
        f"rkt-operator binder benchmark ({result['cpus']} CPUs, Python {result['python']}); "
        f"tasks created by concurrent writers in {result['apply_seconds']:.1f}s",
        header,
        "|" + "---|" * 9,
        row,
        f"tasks per node: {result['per_node']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="rkt-operator-bench-binder-") as tmp:
        result = run(args, Path(tmp))
    sys.stdout.write(render(result) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["bound"] == result["tasks"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
