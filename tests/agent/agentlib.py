"""Helpers for the agent tests: a simulated node (an rkt-sim store), the agent as a real
subprocess (``rkt-operator run``), RktTask manifests, and waits on a task's status."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proclib import ChildProcess
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, get_json, wait_for

BIN = Path(sys.executable).parent  # the virtualenv's bin/: rkt-operator and rkt-sim
WAIT = 180.0  # generous: the machine is shared; timing is never asserted


def node(name: str, root: Path) -> SimNode:
    sim = SimNode(name=name, root=root / name, bin_dir=BIN)
    sim.prepare()
    return sim


def sim(node: SimNode, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(node.rkt_sim), f"--dir={node.rkt_dir}", f"--local-config={node.local_config}"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, check=False)


def pods(node: SimNode) -> list[dict[str, Any]]:
    """``rkt list --format=json`` of the node's store."""
    done = sim(node, "list", "--format=json")
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout or "null") or []
    assert isinstance(value, list)
    return value


def live_pods(node: SimNode) -> list[dict[str, Any]]:
    return [p for p in pods(node) if p.get("state") in ("running", "prepared")]


def set_faults(node: SimNode, faults: Mapping[str, Any]) -> None:
    """Fault injection of the simulator (see rkt_sim.faults)."""
    (node.rkt_dir / ".sim-faults.json").write_text(json.dumps(faults))


@dataclass
class Agent(ChildProcess):
    """``rkt-operator run`` for one node, as an operator would start it."""

    node: SimNode
    kubeconfig: Path
    extra: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env_extra: Mapping[str, str] = field(default_factory=dict)
    stop_grace = 60.0

    def argv(self) -> list[str]:
        n = self.node
        return [
            str(BIN / "rkt-operator"), "run",
            f"--node-name={n.name}",
            f"--rkt-path={n.rkt_sim}",
            f"--rkt-dir={n.rkt_dir}",
            f"--rkt-local-config={n.local_config}",
            f"--task-root={n.task_root}",
            "--launcher=detached",
            "--liveness-endpoint=",
            "--metrics-endpoint=",  # tests that scrape pass a free port in ``extra``
            "--log-format=text",
            "--resync-interval-seconds=1",
            "--restart-backoff-seconds=1",
            "--restart-backoff-max-seconds=4",
            "--fingerprint-interval-seconds=30",
            *self.extra,
        ]  # fmt: skip

    def start(self) -> Agent:
        env = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "KUBECONFIG": str(self.kubeconfig),
            "HOME": str(self.node.root),
            "LANG": "C.UTF-8",
            **self.env_extra,
        }
        self._spawn(self.argv(), env, self.node.agent_log, "agent", cwd=self.node.root)
        return self

    def log(self) -> str:
        return self.node.agent_log.read_text(errors="replace")


StartAgent = Callable[..., Agent]


# -- tasks ------------------------------------------------------------------------------


def task(name: str, node_name: str, image: Path | str, **spec: Any) -> dict[str, Any]:
    """An RktTask manifest; images are ACI files (unsigned: insecureOptions [image])."""
    body: dict[str, Any] = {
        "nodeName": node_name,
        "image": str(image),
        "insecureOptions": ["image"],
        **spec,
    }
    return {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {"name": name},
        "spec": body,
    }


def apply(kubectl: Kubectl, namespace: str, manifest: Mapping[str, Any]) -> None:
    kubectl("apply", f"--namespace={namespace}", "-f", "-", input=json.dumps(manifest))


def get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    return get_json(kubectl, "rkttask", name, namespace)


def condition(obj: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def wait_task(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float = WAIT,
) -> dict[str, Any]:
    """Poll the task until ``predicate(obj)`` holds; the object."""

    def check() -> dict[str, Any] | None:
        obj = get(kubectl, namespace, name)
        return obj if obj is not None and predicate(obj) else None

    return wait_for(check, timeout=timeout, interval=0.5, what=f"{namespace}/{name}: {what}")


def phase_is(*phases: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return (
            status.get("phase") in phases
            and status.get("observedGeneration") == (obj["metadata"]["generation"])
        )

    return check


def events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    done = kubectl(
        "get", "events", f"--namespace={namespace}",
        f"--field-selector=involvedObject.name={name}", "-o", "json",
    )  # fmt: skip
    items = json.loads(done.stdout).get("items") or []
    return sorted(items, key=lambda e: e.get("metadata", {}).get("creationTimestamp") or "")


def task_dir(node: SimNode, namespace: str, name: str, uid: str) -> Path:
    return node.task_root / namespace / f"{name}-{uid}"


def rkttask_writes(metrics: str) -> dict[str, float]:
    """apiserver_request_total for rkttasks by verb (PATCH/PUT/POST/DELETE), from /metrics."""
    totals: dict[str, float] = {}
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{") or 'resource="rkttasks"' not in line:
            continue
        labels, _, value = line.rpartition(" ")
        verb = labels.split('verb="', 1)[1].split('"', 1)[0]
        totals[verb] = totals.get(verb, 0.0) + float(value)
    return totals


def resync_count(agent: Agent, namespace: str, name: str) -> int:
    """How many resync ticks the agent logged for the task (needs --log-level=DEBUG)."""
    marker = f"object={namespace}/{name} "
    return sum(
        1 for line in agent.log().splitlines() if marker in line and "resync pass done" in line
    )


def wait_resyncs(agent: Agent, namespace: str, name: str, count: int) -> None:
    """Wait until the agent has re-examined the task ``count`` more times."""
    target = resync_count(agent, namespace, name) + count
    wait_for(
        lambda: resync_count(agent, namespace, name) >= target,
        timeout=WAIT,
        what=f"{count} resyncs of {namespace}/{name}",
    )
