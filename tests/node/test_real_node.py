"""The agent as it ships, on a real node: ``helm install`` of the chart with the image built by
``.ci/agent-image.sh``, run by a real kubelet + containerd; a service task on real rkt; and the
task's rkt pod across the agent's life: ``kubectl delete pod`` of the agent, ``helm upgrade``
to a new image tag, ``helm uninstall``.

The steps share one release and one task (module scope), in order; each test asserts one
promise. The agent reaches the API server the way client-go's in-cluster config does, from
``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` and the projected ServiceAccount token:
there is no kube-proxy and no DNS on this node, so the harness points those variables at the
API server's address on the node (the chart's ``extraEnv``), as one does on nodes whose agents
start before kube-proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from nodelib import NodeInputs

from rkt_devkit import processes
from rkt_devkit.aci import build_aci
from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.hoststate import remove_cgroup_tree, unmount_all
from rkt_devkit.kube import get_json, wait_for
from rkt_devkit.node import Node

# A real node starts within the first test (control plane, containerd, kubelet): more time
# than the suite's default per-test timeout on a loaded 2-core machine.
pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rkt-operator"
NSPAWN_SHIM_DIR = REPO / "helm" / "node"
RELEASE = "rkt-operator"
NAMESPACE = "rkt-operator"
TASKS = "apps"
WAIT = 240.0  # generous: two cores shared by a whole team; timing is never asserted
PLAIN = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STATE_ROOT = Path("/var/lib/rkt-operator-nodetest")


@dataclass
class Scenario:
    """What the steps share: the node, helm, host paths and what each step observed."""

    node: Node
    inputs: NodeInputs
    helm_env: dict[str, str]
    state: Path
    host_port: int
    metrics_port: int
    liveness_port: int
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def cgroup(self) -> str:
        return f"rkt-operator-{self.state.name}"

    @property
    def plane(self) -> ControlPlane:
        return self.node.plane

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, check=check, input=input)

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        helm = self.plane.binary("helm")
        argv = [str(helm), *args, "--kubeconfig", str(self.plane.kubeconfig)]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self.helm_env, timeout=300, check=False
        )
        assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
        return done

    def rkt(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The host's rkt on the agent's data directory (what a node admin would run)."""
        argv = [
            str(self.inputs.rkt_dir / "rkt"),
            f"--dir={self.state / 'rkt'}",
            f"--local-config={self.state / 'etc-rkt'}",
            *args,
        ]
        env = {**os.environ, "PATH": f"{NSPAWN_SHIM_DIR}:{os.environ.get('PATH', '')}"}
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False, env=env
        )

    def values(self, tag: str) -> str:
        rkt = self.inputs.rkt_dir / "rkt"
        values = {
            "image": {
                "repository": self.inputs.agent_image.rsplit(":", 1)[0],
                "tag": tag,
                "pullPolicy": "Never",
            },
            "agent": {
                "rktPath": str(rkt),
                "rktDir": str(self.state / "rkt"),
                "rktLocalConfig": str(self.state / "etc-rkt"),
                "taskRoot": str(self.state / "tasks"),
                "livenessEndpoint": f"http://0.0.0.0:{self.liveness_port}/healthz",
                "metricsEndpoint": f"http://127.0.0.1:{self.metrics_port}/metrics",
                "resyncIntervalSeconds": 2,
                "logFormat": "json",
                # Pods leave the agent's container: host namespaces, a host cgroup of their
                # own under this run's name (removed at the end).
                "launcher": "detached",
                "hostLaunch": "always",
                "hostNamespacesPid": host_namespaces_pid(),
                "hostCgroup": self.cgroup,
                # systemd is not PID 1 here: rkt's host stage1 needs the nspawn shim first on
                # the PATH of the rkt processes, which run in the host's mount namespace.
                "extraPath": [str(NSPAWN_SHIM_DIR)],
            },
            "hostPaths": {
                "rktBinary": str(rkt),
                "rktStage1Dir": str(self.inputs.rkt_dir),
                # No systemd as PID 1 on these machines.
                "systemd": False,
                "extra": [
                    {"name": "images", "path": str(self.state / "images"), "readOnly": True},
                ],
            },
            "tolerations": [{"operator": "Exists"}],
            "extraEnv": [
                # No kube-proxy: the Service IP does not route; no DNS either.
                {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                {"name": "KUBERNETES_SERVICE_PORT", "value": self.plane.server.rsplit(":", 1)[1]},
            ],
        }
        path = self.state / f"values-{tag}.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)

    # ----- observations -----------------------------------------------------------------------

    def agent_pods(self) -> list[dict[str, Any]]:
        done = self.kubectl("get", "pods", f"--namespace={NAMESPACE}", "-o", "json")
        items: list[dict[str, Any]] = json.loads(done.stdout)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_agent(self, not_uid: str | None = None) -> dict[str, Any]:
        """Wait for exactly one Ready agent pod (other than ``not_uid``) and return it."""

        def one() -> dict[str, Any] | None:
            pods = [p for p in self.agent_pods() if p["metadata"]["uid"] != not_uid]
            if len(pods) != 1:
                return None
            conditions = pods[0].get("status", {}).get("conditions", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return pods[0] if ready else None

        try:
            return wait_for(one, timeout=WAIT, interval=1, what="a Ready agent pod")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from exc

    def task(self, name: str) -> dict[str, Any]:
        task = get_json(self.kubectl, "rkttask", name, TASKS)
        assert task is not None, f"RktTask {name} is gone"
        return task

    def ready_task(self, name: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            task = self.task(name)
            conditions = task.get("status", {}).get("conditions", [])
            ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return task if ok and task["status"].get("uuid") else None

        try:
            return wait_for(ready, timeout=WAIT, interval=1, what=f"RktTask {name} Ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from exc

    def pod_status(self, uuid: str) -> dict[str, str]:
        """``rkt status`` of a pod as key=value pairs (state, pid, ...)."""
        done = self.rkt("status", uuid)
        assert done.returncode == 0, f"rkt status {uuid}: {done.stderr}"
        pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def http(self) -> str:
        with PLAIN.open(f"http://127.0.0.1:{self.host_port}/", timeout=10) as response:
            return str(response.read().decode())

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with PLAIN.open(url, timeout=10) as response:
            return str(response.read().decode())

    def diagnostics(self) -> str:
        parts = [self.node.logs(20)]
        for pod in self.agent_pods():
            name = pod["metadata"]["name"]
            done = self.kubectl("logs", f"--namespace={NAMESPACE}", name, "--tail=40", check=False)
            parts.append(f"--- agent {name} ---\n{done.stdout}{done.stderr}")
            parts.append(json.dumps(pod.get("status", {}), indent=1)[:3000])
        return "\n".join(parts)


def host_namespaces_pid() -> int:
    """PID 1 where its namespaces can be read (a real node); else 2, kthreadd, which is
    always in the initial namespaces (machines whose PID 1 is a sandbox's supervisor)."""
    try:
        os.readlink("/proc/1/ns/mnt")
    except OSError:
        return 2
    return 1


def task_manifest(name: str, image: Path, host_port: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "rktoperator.io/v1alpha1",
            "kind": "RktTask",
            "metadata": {"name": name, "namespace": TASKS},
            "spec": {
                "nodeName": "rkt-node",
                "image": str(image),
                "ports": [{"name": "http", "hostPort": host_port, "protocol": "TCP"}],
                "restartPolicy": "Always",
                "killTimeoutSeconds": 5,
            },
        }
    )


@pytest.fixture(scope="module")
def scenario(
    node: Node, node_inputs: NodeInputs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    # Host paths the chart mounts must be host paths: a directory of our own under /var/lib.
    state = STATE_ROOT / f"{node.name}-{os.getpid()}"
    if state.exists():
        shutil.rmtree(state)
    for sub in ("rkt", "etc-rkt", "tasks", "images"):
        (state / sub).mkdir(parents=True)
    build_aci(
        state / "images" / "web.aci",
        name="example.com/web",
        version="1.0",
        exec=["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
        ports=[{"name": "http", "protocol": "tcp", "port": 8080}],
        files={"/www/index.html": "served by rkt\n"},
    )
    home = tmp_path_factory.mktemp("helm-home")
    helm_env = {f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}
    helm_env.update(HOME=str(home), PATH=os.environ.get("PATH", ""))
    host_port, metrics_port, liveness_port = processes.free_ports(3)
    s = Scenario(node, node_inputs, helm_env, state, host_port, metrics_port, liveness_port)
    s.kubectl("create", "namespace", TASKS)
    try:
        yield s
    finally:
        _cleanup(s)


def _cleanup(s: Scenario) -> None:
    """Stop every rkt pod of the scenario, then remove its host directories."""
    s.kubectl("delete", "rkttasks", "--all", f"--namespace={TASKS}", "--wait=false", check=False)
    done = s.rkt("list", "--no-legend", "--full")
    for line in done.stdout.splitlines():
        uuid = line.split()[0] if line.split() else ""
        if uuid:
            s.rkt("stop", "--force", uuid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [line.split() for line in s.rkt("list", "--no-legend").stdout.splitlines()]
        if not [w for w in states if "running" in w]:
            break
        time.sleep(1)
    s.rkt("gc", "--grace-period=0s")
    for top in Path("/sys/fs/cgroup").glob(f"*/{s.cgroup}"):
        remove_cgroup_tree(top, kill=True)
    unmount_all([s.state])
    shutil.rmtree(s.state, ignore_errors=True)
    with contextlib.suppress(OSError):
        STATE_ROOT.rmdir()  # when no other run uses it


# ----- the steps ------------------------------------------------------------------------------


def test_helm_install_runs_the_agent_ready(
    scenario: Scenario, record_property: Callable[[str, object], None]
) -> None:
    tag = scenario.inputs.agent_image.rsplit(":", 1)[1]
    scenario.helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
        "--values", scenario.values(tag),
    )  # fmt: skip
    began = time.monotonic()
    pod = scenario.ready_agent()
    record_property("agent_ready_seconds", round(time.monotonic() - began, 1))
    (container,) = pod["spec"]["containers"]
    assert container["image"] == scenario.inputs.agent_image
    assert pod["spec"]["nodeName"] == scenario.node.name
    scenario.observed["agent"] = pod


def test_service_task_ready_on_real_rkt_and_answers_http(scenario: Scenario) -> None:
    scenario.kubectl(
        "apply", "-f", "-",
        input=task_manifest("web", scenario.state / "images" / "web.aci", scenario.host_port),
    )  # fmt: skip
    task = scenario.ready_task("web")
    uuid = task["status"]["uuid"]
    # The host's real rkt knows the pod; its pid (stage1's) shows once rkt has recorded it.
    status = wait_for(
        lambda: (st := scenario.pod_status(uuid)).get("pid") and st,
        timeout=60, interval=1, what=f"rkt status {uuid} with a pid",
    )  # fmt: skip
    assert status["state"] == "running"
    body = wait_for(lambda: _try(scenario.http), timeout=60, interval=1, what="HTTP answer")
    assert body == "served by rkt\n"
    # Out of the agent container's reach: the pod's processes are in the host cgroup the agent
    # was given (so the container's memory limit and its end never count them), not kubepods.
    cgroups = Path(f"/proc/{status['pid']}/cgroup").read_text().splitlines()
    memory = [line for line in cgroups if ":memory:" in line or line.startswith("0::")]
    assert memory, cgroups
    assert all(f"/{scenario.cgroup}/{uuid}" in line for line in memory), cgroups
    assert not [line for line in cgroups if "kubepods" in line], cgroups
    scenario.observed.update(uuid=uuid, pid=status["pid"], started=status.get("started"))
    assert task["status"]["restarts"] == 0


def _try(fetch: Any) -> Any:
    try:
        return fetch()
    except OSError:
        return None


def _assert_task_survived(scenario: Scenario, how: str) -> None:
    uuid = scenario.observed["uuid"]
    status = scenario.pod_status(uuid)
    assert status["state"] == "running", f"after {how} the pod is {status}"
    assert status.get("pid") == scenario.observed["pid"], f"after {how} the pod was restarted"
    assert status.get("started") == scenario.observed["started"]
    assert scenario.http() == "served by rkt\n"
    # The new agent adopts the pod: the task keeps its UUID and restart count, and the agent
    # attributes the running pod to the task in its metrics.
    task = scenario.ready_task("web")
    assert task["status"]["uuid"] == uuid
    assert task["status"]["restarts"] == 0
    adopted = f'namespace="{TASKS}",name="web",uuid="{uuid}"'
    wait_for(
        lambda: adopted in (_try(scenario.metrics) or ""),
        timeout=WAIT, interval=2, what=f"the new agent's metrics for pod {uuid}",
    )  # fmt: skip
    live = [line for line in scenario.rkt("list", "--no-legend", "--full").stdout.splitlines()
            if "running" in line.split()]  # fmt: skip
    assert [line.split()[0] for line in live] == [uuid], "a second pod was started"


def test_task_pod_outlives_a_deleted_agent_pod(scenario: Scenario) -> None:
    assert "uuid" in scenario.observed, "needs the running task of the previous step"
    old = scenario.observed["agent"]
    scenario.kubectl(
        "delete", "pod", old["metadata"]["name"], f"--namespace={NAMESPACE}", "--wait=true",
        "--timeout=120s",
    )  # fmt: skip
    new = scenario.ready_agent(not_uid=old["metadata"]["uid"])
    scenario.observed["agent"] = new
    _assert_task_survived(scenario, "kubectl delete pod of the agent")


def test_task_pod_outlives_a_helm_upgrade_to_a_new_image_tag(scenario: Scenario) -> None:
    assert "uuid" in scenario.observed, "needs the running task of the previous steps"
    old = scenario.observed["agent"]
    repository = scenario.inputs.agent_image.rsplit(":", 1)[0]
    new_tag = "upgrade-" + scenario.inputs.agent_image.rsplit(":", 1)[1]
    scenario.node.tag_image(scenario.inputs.agent_image, f"{repository}:{new_tag}")
    scenario.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--values", scenario.values(new_tag),
    )  # fmt: skip
    new = scenario.ready_agent(not_uid=old["metadata"]["uid"])
    (container,) = new["spec"]["containers"]
    assert container["image"] == f"{repository}:{new_tag}"
    scenario.observed["agent"] = new
    _assert_task_survived(scenario, "helm upgrade")


def test_helm_uninstall_leaves_running_tasks_running_unmanaged(scenario: Scenario) -> None:
    """Documented behaviour (README, "Uninstalling"): the agent stops, its task pods do not;
    the RktTasks and the CRD stay (Helm never deletes a chart's CRDs). Nothing manages the
    pods until an agent runs on the node again, which adopts them."""
    assert "uuid" in scenario.observed, "needs the running task of the previous steps"
    uuid = scenario.observed["uuid"]
    scenario.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "180s")
    wait_for(lambda: not scenario.agent_pods(), timeout=WAIT, interval=1, what="no agent pod")
    status = scenario.pod_status(uuid)
    assert status["state"] == "running"
    assert status.get("pid") == scenario.observed["pid"]
    assert scenario.http() == "served by rkt\n"
    assert scenario.task("web")["status"]["uuid"] == uuid
    scenario.kubectl("get", "crd", "rkttasks.rktoperator.io")
