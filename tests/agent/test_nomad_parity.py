"""Behaviours the Nomad driver had that an outside check found missing or contradicting the
README, checked through a real agent on the simulator: a task whose mapped ports never get
an address is refused for good (no second prepare, no pod left behind)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from agentlib import StartAgent, apply, condition, get, pods, task, wait_task

from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl

pytestmark = pytest.mark.k8s


def _link_local_network(sim_node: SimNode) -> str:
    """A CNI network whose addresses are link-local: rkt reports them, discovery skips them
    (only global-unicast addresses count), so a pod on it never gets an IP."""
    net_d = sim_node.local_config / "net.d"
    net_d.mkdir(parents=True, exist_ok=True)
    conf = {
        "name": "linklocal",
        "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "169.254.77.0/24"},
    }
    (net_d / "10-linklocal.conf").write_text(json.dumps(conf))
    return "linklocal"


def test_mapped_ports_without_an_address_stall_once_and_leave_no_pod(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    net = _link_local_network(sim_node)
    start_agent(sim_node, "--discovery-timeout-seconds=2", "--resync-interval-seconds=1")
    apply(
        kubectl,
        namespace,
        task("nonet", sim_node.name, images["service"], net=[net], ports=[{"name": "http"}]),
    )
    obj = wait_task(
        kubectl, namespace, "nonet",
        lambda o: condition(o, "Stalled").get("status") == "True",
        what="Stalled",
    )  # fmt: skip
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "NetworkUnknown"
    assert (
        "Trying to map ports but driver could not determine network information"
        in (stalled["message"])
    )
    assert "no good driver networks out of 1 returned" in stalled["message"]
    first_uuid = obj["status"].get("uuid")
    # Several resyncs later: still one attempt (the UUID of the first prepare), no pod.
    time.sleep(5)
    later = get(kubectl, namespace, "nonet")
    assert later is not None
    assert later["status"].get("uuid") == first_uuid
    assert condition(later, "Stalled")["status"] == "True"
    assert pods(sim_node) == []
