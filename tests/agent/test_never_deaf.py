"""Never deaf: the agent serves its node's tasks again after the RktTask resource was
unavailable, and its liveness endpoint says so while it cannot.

These tests stop and start kube-apiserver and delete the CRD, so they run against a control
plane of their own (module scope), never the session's.

- The reproduction of issue 16: kube-apiserver is down when the agent starts and comes back
  0.5-2 s later (the agent meets a server that does not serve the CRD yet); a task created
  afterwards must reach Running. Repeated, since it was intermittent.
- The CRD is deleted (the agent's tasks go with it) and re-created: a new task runs.
- Liveness: the endpoint answers 503 while the node's tasks cannot be watched (apiserver
  down longer than the bound) and 200 again once the watch is back.
- Outage logs: an API outage while tasks are handled leaves warnings that name the object,
  and no traceback.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentlib import Agent, apply, phase_is, task, task_dir, wait_task

from rkt_devkit.aci import build_aci
from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, unique_name, wait_for

pytestmark = pytest.mark.k8s

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"
# The bound the agent is started with in these tests (--watch-stale-seconds).
STALE = 10


@pytest.fixture(scope="module")
def plane(kubebuilder_assets: Path) -> Iterator[ControlPlane]:
    with ControlPlane(kubebuilder_assets) as cp:
        cp.apply_crds(REPO_CRDS)
        yield cp


STOPPABLE = "while [ ! -f /alloc/stop ]; do sleep 0.2; done; exit $(cat /alloc/stop)"


@pytest.fixture(scope="module")
def stoppable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deaf-stoppable")
    return build_aci(
        root / "stoppable.aci", name="example.com/stoppable", exec=["/bin/sh", "-c", STOPPABLE]
    )


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deaf-images")
    return build_aci(root / "sleeper.aci", name="example.com/sleeper", exec=["/bin/sleep", "3600"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def agent(plane: ControlPlane, tmp_path: Path) -> Iterator[Agent]:
    sim = SimNode(name=unique_name("deaf", max_length=30), root=tmp_path / "node",
                  bin_dir=Path(sys.executable).parent)  # fmt: skip
    sim.prepare()
    port = _free_port()
    agent = Agent(
        node=sim,
        kubeconfig=plane.kubeconfig,
        extra=(
            f"--liveness-endpoint=http://127.0.0.1:{port}/healthz",
            f"--watch-stale-seconds={STALE}",
        ),
    )
    agent.liveness_port = port  # type: ignore[attr-defined]
    yield agent
    agent.stop()
    sim.remove_pods()


def _namespace(plane: ControlPlane) -> str:
    name = unique_name("deaf")
    plane.kubectl("create", "namespace", name)
    return name


def _health(agent: Agent) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{agent.liveness_port}/healthz"  # type: ignore[attr-defined]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return int(exc.code), {}
    except OSError:
        return 0, {}


def _delete_crd(plane: ControlPlane) -> None:
    """Delete the RktTask CRD. Its tasks go with it; their finalizers would hold it (no agent
    runs the finalizer of a resource that is going away), so they are released first."""
    listed = json.loads(plane.kubectl("get", "rkttasks", "-A", "-o", "json").stdout)
    for item in listed.get("items") or []:
        meta = item["metadata"]
        plane.kubectl(
            "patch", "rkttask", meta["name"], f"--namespace={meta['namespace']}",
            "--type=merge", "-p", '{"metadata":{"finalizers":[]}}', check=False,
        )  # fmt: skip
    plane.kubectl("delete", "customresourcedefinition/rkttasks.rktoperator.io", "--wait=true",
                  "--timeout=60s")  # fmt: skip


def _runs(plane: ControlPlane, agent: Agent, name: str, sleeper: Path) -> None:
    ns = _namespace(plane)
    kubectl: Kubectl = plane.kubectl
    apply(kubectl, ns, task(name, agent.node.name, sleeper, restartPolicy="Always"))
    wait_task(kubectl, ns, name, phase_is("Running"), what="Running", timeout=120)


# The agent meets the API server at different moments of its start-up: refused connections,
# then a server that answers before it serves the CRD (the deaf case: 2.5 s and later here).
@pytest.mark.parametrize("down", [0.5, 2.0, 3.0, 4.0])
def test_agent_started_while_the_apiserver_is_down_serves_its_tasks(
    plane: ControlPlane, agent: Agent, sleeper: Path, down: float
) -> None:
    plane.stop_apiserver()
    agent.start()
    time.sleep(down)
    plane.start_apiserver(wait=False)
    plane.wait_apiserver_ready()
    _runs(plane, agent, "after-outage", sleeper)
    assert agent.alive
    wait_for(lambda: _health(agent)[0] == 200, timeout=60, what="liveness 200")


def test_crd_missing_at_start_then_created(
    plane: ControlPlane, agent: Agent, sleeper: Path
) -> None:
    _delete_crd(plane)
    try:
        agent.start()
        wait_for(lambda: "Unresolved resources" in agent.log(), timeout=60,
                 what="the agent to start without the resource")  # fmt: skip
        wait_for(lambda: _health(agent)[0] == 503, timeout=STALE * 4, interval=1.0,
                 what="liveness 503 while the resource is not served")  # fmt: skip
    finally:
        plane.apply_crds(REPO_CRDS)
    _runs(plane, agent, "created-later", sleeper)
    assert agent.alive
    wait_for(lambda: _health(agent)[0] == 200, timeout=60, what="liveness 200")


def test_crd_deleted_and_recreated(plane: ControlPlane, agent: Agent, sleeper: Path) -> None:
    agent.start()
    _runs(plane, agent, "before", sleeper)
    _delete_crd(plane)
    time.sleep(3)
    plane.apply_crds(REPO_CRDS)
    _runs(plane, agent, "after", sleeper)
    assert agent.alive


def test_liveness_tells_the_truth_across_an_outage(
    plane: ControlPlane, agent: Agent, sleeper: Path
) -> None:
    agent.start()
    _runs(plane, agent, "live", sleeper)
    wait_for(lambda: _health(agent)[0] == 200, timeout=60, what="liveness 200")
    plane.stop_apiserver()
    try:
        code = wait_for(lambda: _health(agent)[0] == 503, timeout=STALE * 4, interval=1.0,
                        what="liveness 503 while the API is down")  # fmt: skip
        assert code
    finally:
        plane.start_apiserver()
    wait_for(lambda: _health(agent)[0] == 200, timeout=90, what="liveness 200 again")
    log = agent.log()
    assert "Traceback" not in log


def test_api_outage_is_one_warning_per_retry_without_traceback(
    plane: ControlPlane, agent: Agent, stoppable: Path
) -> None:
    """The app exits while kube-apiserver is down: the agent's status writes fail and are
    retried (warnings naming the task, no traceback); once the API is back the task is
    Running again in a new pod."""
    agent.start()
    ns = _namespace(plane)
    kubectl: Kubectl = plane.kubectl
    apply(kubectl, ns, task("outage", agent.node.name, stoppable, restartPolicy="Always"))
    obj = wait_task(kubectl, ns, "outage", phase_is("Running"), what="Running", timeout=120)
    stop_file = task_dir(agent.node, ns, "outage", obj["metadata"]["uid"]) / "alloc" / "stop"
    plane.stop_apiserver()
    try:
        stop_file.write_text("3")
        wait_for(lambda: "API unavailable" in agent.log(), timeout=60, interval=1.0,
                 what="a status write to fail during the outage")  # fmt: skip
        time.sleep(5)
    finally:
        plane.start_apiserver()
    stop_file.unlink(missing_ok=True)
    done = wait_task(
        kubectl, ns, "outage",
        lambda o: phase_is("Running")(o) and o["status"]["uuid"] != obj["status"]["uuid"],
        what="Running again in a new pod", timeout=120,
    )  # fmt: skip
    assert done["status"]["uuid"] != obj["status"]["uuid"]
    log = agent.log()
    assert "Traceback" not in log
    warned = [line for line in log.splitlines() if "API unavailable" in line]
    assert warned
    assert all("level=WARNING" in line for line in warned)
    assert any(f"object={ns}/outage" in line for line in warned)
