"""The agent (``rkt-operator run``) against the real control plane and the REAL rkt.

Host flavor, as root: pods get a 172.16.28.x address and ``--port`` forwarding through
iptables. Every test deletes what it made and checks, through the API and on the host,
that nothing is left (no pod, overlay mount or NAT rule of it); the session check
(``host_left_clean``) covers network namespaces and veths across the whole tier.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from agentlib import (
    BIN,
    WAIT,
    Agent,
    StartAgent,
    apply,
    events,
    get,
    phase_is,
    set_faults,
    task,
    task_dir,
    wait_task,
)

import realrkt
from rkt_devkit.aci import build_aci
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.rkt]

PAGE = "served by a real rkt pod\n"
# Waits for /alloc/stop, then exits with the code written in it (as the sim tier's image).
STOPPABLE = "while [ ! -f /alloc/stop ]; do sleep 0.2; done; exit $(cat /alloc/stop)"
SLEEP_SECONDS = "3607"  # a duration no other test's app uses: finds this app's process


@pytest.fixture(scope="module")
def real_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real-images")
    return {
        "web": build_aci(
            root / "web.aci",
            name="example.com/web",
            exec=["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
            ports=[{"name": "http", "protocol": "tcp", "port": 8080}],
            files={"/www/index.html": PAGE},
        ),
        "sleeper": build_aci(
            root / "sleeper.aci", name="example.com/sleeper", exec=["/bin/sleep", SLEEP_SECONDS]
        ),
        "fail": build_aci(
            root / "fail.aci", name="example.com/fail", exec=["/bin/sh", "-c", "exit 3"]
        ),
        "stoppable": build_aci(
            root / "stoppable.aci", name="example.com/stoppable", exec=["/bin/sh", "-c", STOPPABLE]
        ),
        "stubborn": build_aci(
            root / "stubborn.aci",
            name="example.com/stubborn",
            exec=["/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"],
        ),
    }


@pytest.fixture
def real_node(
    real_rkt: str, host_left_clean: None, node_name: str, tmp_path: Path
) -> Iterator[SimNode]:
    """A node whose rkt is the real one; its pods are removed at the end (rm tears down the
    network namespace, veth, NAT rules and overlay mounts)."""
    shim = None if realrkt.systemd_is_pid1() else realrkt.NSPAWN_SHIM_DIR
    sim = SimNode(
        name=node_name, root=tmp_path / node_name, bin_dir=BIN, real_rkt=Path(real_rkt),
        nspawn_dir=shim,
    )  # fmt: skip
    sim.prepare()
    yield sim
    sim.remove_pods()


@pytest.fixture
def real_agent(real_node: SimNode, start_agent: StartAgent) -> Agent:
    return start_real_agent(real_node, start_agent)


def start_real_agent(sim: SimNode, start_agent: StartAgent) -> Agent:
    extra = [f"--extra-path={sim.nspawn_dir}"] if sim.nspawn_dir else []
    return start_agent(sim, *extra, env={"PATH": sim.path_env})


def rkt(sim: SimNode, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(sim.rkt_sim), f"--dir={sim.rkt_dir}", f"--local-config={sim.local_config}"]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": sim.path_env},
    )


def pods(sim: SimNode) -> list[dict[str, Any]]:
    done = rkt(sim, "list", "--format=json")
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout or "null") or []
    assert isinstance(value, list)
    return value


def live(sim: SimNode) -> list[str]:
    return [str(p["name"]) for p in pods(sim) if p.get("state") in ("running", "prepared")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_traces(uuid: str) -> list[str]:
    """Mounts and NAT rules of one pod that are still on the host (rkt names the pod's
    UUID in its overlay mounts and in the CNI rules' comments)."""
    mounts = [
        ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines() if uuid in ln
    ]
    nat = subprocess.run(
        ["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True, check=False
    ).stdout
    return mounts + [ln for ln in nat.splitlines() if uuid in ln]


def delete_and_wait(kubectl: Kubectl, namespace: str, name: str) -> None:
    kubectl("delete", "rkttask", name, "-n", namespace, "--wait=false")
    wait_for(lambda: get(kubectl, namespace, name) is None, timeout=WAIT, what=f"{name} deleted")


def test_service_is_ready_with_ip_ports_and_answers_on_its_host_port(
    kubectl: Kubectl,
    namespace: str,
    real_node: SimNode,
    real_agent: Agent,
    real_images: dict[str, Path],
) -> None:
    port = free_port()
    manifest = task(
        "web",
        real_node.name,
        real_images["web"],
        ports=[{"name": "http", "hostPort": port}],
    )
    apply(kubectl, namespace, manifest)
    obj = wait_task(kubectl, namespace, "web", phase_is("Running"), what="Running")
    status = obj["status"]
    uuid = status["uuid"]
    assert ipaddress.ip_address(status["ip"]) in ipaddress.ip_network("172.16.28.0/24")
    assert status["portMap"] == {"http": 8080}
    assert [(p["name"], p["hostPort"]) for p in status["ports"]] == [("http", port)]
    assert live(real_node) == [uuid]

    def answered() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                return str(reply.read().decode())
        except OSError:
            return None

    assert wait_for(answered, timeout=60, what="the app answers on its host port") == PAGE
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"

    delete_and_wait(kubectl, namespace, "web")
    assert live(real_node) == []
    assert uuid not in [p["name"] for p in pods(real_node)]
    assert host_traces(uuid) == []


def test_run_once_tasks_report_their_exit_codes(
    kubectl: Kubectl,
    namespace: str,
    real_node: SimNode,
    real_agent: Agent,
    real_images: dict[str, Path],
) -> None:
    apply(
        kubectl,
        namespace,
        task("fails", real_node.name, real_images["fail"], restartPolicy="Never"),
    )
    failed = wait_task(kubectl, namespace, "fails", phase_is("Failed"), what="Failed")
    assert failed["status"]["exitCode"] == 3
    assert failed["status"]["restarts"] == 0
    stalled = next(c for c in failed["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    delete_and_wait(kubectl, namespace, "fails")
    assert pods(real_node) == []


def test_an_app_killed_from_outside_is_restarted_by_policy(
    kubectl: Kubectl,
    namespace: str,
    real_node: SimNode,
    real_agent: Agent,
    real_images: dict[str, Path],
) -> None:
    apply(kubectl, namespace, task("victim", real_node.name, real_images["sleeper"]))
    first = wait_task(kubectl, namespace, "victim", phase_is("Running"), what="Running")["status"][
        "uuid"
    ]

    def app_process() -> psutil.Process | None:
        for proc in psutil.process_iter(["cmdline"]):
            if (proc.info.get("cmdline") or []) == ["/bin/sleep", SLEEP_SECONDS]:
                return proc
        return None

    wait_for(app_process, timeout=60, what="the app's process").kill()
    after = wait_task(
        kubectl,
        namespace,
        "victim",
        lambda o: (
            o.get("status", {}).get("phase") == "Running"
            and o["status"].get("uuid") not in (None, first)
        ),
        what="Running in a new pod",
    )
    assert after["status"]["restarts"] == 1
    assert live(real_node) == [after["status"]["uuid"]]
    assert first not in [p["name"] for p in pods(real_node)]  # the exited pod was removed
    story = [(e.get("reason"), e.get("message", "")) for e in events(kubectl, namespace, "victim")]
    assert any(first in message for _, message in story), story  # the exit is told
    delete_and_wait(kubectl, namespace, "victim")
    assert host_traces(first) == []


def test_agent_killed_during_a_start_adopts_the_pod(
    kubectl: Kubectl,
    namespace: str,
    real_node: SimNode,
    start_agent: StartAgent,
    real_images: dict[str, Path],
) -> None:
    agent = start_real_agent(real_node, start_agent)
    apply(kubectl, namespace, task("adopted", real_node.name, real_images["sleeper"]))
    # Kill the agent as soon as rkt lists the pod (prepared or launching), before the status
    # names it: the restarted agent finds it by the task identity it carries, no second pod.
    wait_for(lambda: pods(real_node), timeout=WAIT, what="the pod in rkt list")
    agent.kill()
    first = [p["name"] for p in pods(real_node)]
    agent.start()
    obj = wait_task(kubectl, namespace, "adopted", phase_is("Running"), what="Running")
    assert [obj["status"]["uuid"]] == first
    assert obj["status"]["restarts"] == 0
    time.sleep(3)  # a few resyncs: still exactly one pod
    assert live(real_node) == first
    delete_and_wait(kubectl, namespace, "adopted")
    assert pods(real_node) == []


def test_a_pod_that_ignores_sigterm_is_killed_after_the_kill_timeout(
    kubectl: Kubectl,
    namespace: str,
    real_node: SimNode,
    real_agent: Agent,
    real_images: dict[str, Path],
) -> None:
    apply(
        kubectl,
        namespace,
        task("stubborn", real_node.name, real_images["stubborn"], killTimeoutSeconds=2),
    )
    uuid = wait_task(kubectl, namespace, "stubborn", phase_is("Running"), what="Running")["status"][
        "uuid"
    ]
    # "Running" comes with the pod's IP, before stage1 has started the app: wait until the
    # app's shell runs (and so ignores TERM), or the stop would meet no app at all.
    wait_for(
        lambda: [
            p
            for p in psutil.process_iter(["cmdline"])
            if "trap '' TERM" in " ".join(p.info.get("cmdline") or [])
        ],
        timeout=60,
        what="the TERM-ignoring app runs",
    )
    time.sleep(1)
    delete_and_wait(kubectl, namespace, "stubborn")
    assert pods(real_node) == []
    assert "pod ignored stop, killing" in real_agent.log()
    assert host_traces(uuid) == []


def test_a_failed_prepare_leaves_no_aborted_pod(
    kubectl: Kubectl,
    namespace: str,
    real_node: SimNode,
    real_agent: Agent,
    real_images: dict[str, Path],
) -> None:
    """A port name the image lacks fails rkt prepare after rkt created the pod: the agent
    reports it and removes the ``aborted prepare`` pod rkt leaves behind."""
    manifest = task(
        "badport", real_node.name, real_images["web"], ports=[{"name": "nope", "hostPort": 18099}]
    )
    apply(kubectl, namespace, manifest)

    def stalled(obj: dict[str, Any]) -> bool:
        conds = obj.get("status", {}).get("conditions") or []
        return any(c["type"] == "Stalled" and c["status"] == "True" for c in conds) or any(
            c["type"] == "Reconciling" and "could not be found" in c.get("message", "")
            for c in conds
        )

    obj = wait_task(kubectl, namespace, "badport", stalled, what="the prepare failure reported")
    messages = " ".join(c.get("message", "") for c in obj["status"]["conditions"])
    assert 'port name "nope" could not be found in any apps' in messages
    listing = rkt(real_node, "list", "--full", "--no-legend")
    assert "aborted prepare" not in listing.stdout, listing.stdout
    delete_and_wait(kubectl, namespace, "badport")
    assert rkt(real_node, "list", "--no-legend").stdout.strip() == ""


def test_a_restart_cut_short_by_sigkill_is_counted_once_with_one_event(
    kubectl: Kubectl,
    namespace: str,
    real_rkt: str,
    host_left_clean: None,
    node_name: str,
    tmp_path: Path,
    start_agent: StartAgent,
    real_images: dict[str, Path],
) -> None:
    """The agent is SIGKILLed while the restart's real ``rkt prepare`` runs (after it removed
    the exited pod, before any status write): the next agent counts the restart from the
    pod's stamp, posts its one Restarting event and records it."""
    shim = None if realrkt.systemd_is_pid1() else realrkt.NSPAWN_SHIM_DIR
    wrapper = realrkt.with_faults(tmp_path / "rkt-with-faults", real_rkt)  # "slow" below
    sim = SimNode(
        name=node_name, root=tmp_path / node_name, bin_dir=BIN, real_rkt=wrapper, nspawn_dir=shim
    )
    sim.prepare()
    agent = start_real_agent(sim, start_agent)
    apply(kubectl, namespace, task("count", sim.name, real_images["stoppable"]))
    first = wait_task(kubectl, namespace, "count", phase_is("Running"), what="Running")
    old = first["status"]["uuid"]
    stop_file = task_dir(sim, namespace, "count", first["metadata"]["uid"]) / "alloc" / "stop"
    # The restart's prepare waits 8 s before the real rkt prepare runs: the agent is killed
    # in it (the wrapper lives on and prepares the pod, as an rkt the agent started would).
    set_faults(sim, {"prepare": [{"action": "slow", "seconds": 8}]})
    stop_file.write_text("7")  # the app exits with 7

    def restart_preparing() -> bool:
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if "prepare" in cmdline and f"--dir={sim.rkt_dir}" in cmdline:
                return True
        return False

    wait_for(restart_preparing, timeout=WAIT, what="the restart's rkt prepare under way")
    agent.kill()
    stop_file.unlink()  # the next pod keeps running
    killed = get(kubectl, namespace, "count")
    assert killed is not None
    assert killed["status"]["restarts"] == 0  # the killed agent recorded nothing
    assert old not in live(sim)  # it had removed the exited pod

    agent.start()
    after = wait_task(
        kubectl,
        namespace,
        "count",
        lambda o: o["status"].get("phase") == "Running" and o["status"].get("uuid") != old,
        what="the restarted pod running",
    )
    status = after["status"]
    assert (status["restarts"], status["restartEventsPosted"]) == (1, 1)
    assert live(sim) == [status["uuid"]]
    restarting = [e for e in events(kubectl, namespace, "count") if e["reason"] == "Restarting"]
    assert len(restarting) == 1, restarting
    # (the next agent adopts the pod the killed one's rkt prepared, counted from its stamp,
    # or, when it decides first, makes the restart again from status.backoff and removes
    # the late prepared pod: either way one restart, one event)
    assert "(restart 1)" in restarting[0]["message"]
    delete_and_wait(kubectl, namespace, "count")
    assert pods(sim) == []
    assert host_traces(old) == []
    assert host_traces(status["uuid"]) == []
