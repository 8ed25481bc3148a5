"""Operations on a running agent's node: the Prometheus endpoint (scraped as Prometheus
would) and the node-local ``rkt-operator exec / signal / stats`` commands an admin runs in
the agent's pod, against the real API server and the rkt simulator."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from agentlib import BIN, StartAgent, apply, condition, phase_is, task, task_dir, wait_task
from prometheus_client.parser import text_string_to_metric_families

from rkt_devkit.aci import build_aci
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for
from rkt_operator import __version__

pytestmark = pytest.mark.k8s

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def hup_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An app that writes /local/hup each time it gets SIGHUP, and otherwise idles."""
    script = "trap 'echo hup >> /local/hup' HUP; while true; do sleep 0.2; done"
    root = tmp_path_factory.mktemp("hup")
    return build_aci(root / "hup.aci", name="example.com/hup", exec=["/bin/sh", "-c", script])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> Series | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as rsp:
            text = rsp.read().decode()
    except OSError:
        return None
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def node_command(node: SimNode, *args: str) -> subprocess.CompletedProcess[str]:
    """``rkt-operator <args>`` as an admin runs it on the node (settings as flags)."""
    command, *rest = args
    flags = [
        f"--rkt-path={node.rkt_sim}",
        f"--rkt-dir={node.rkt_dir}",
        f"--rkt-local-config={node.local_config}",
        f"--task-root={node.task_root}",
        "--launcher=detached",
        "--log-level=WARNING",
    ]
    env = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(BIN / "rkt-operator"), command, *flags, *rest],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip


def test_metrics_endpoint_has_the_running_tasks_cpu_and_rss(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
    tmp_path: Path,
) -> None:
    port = free_port()
    start_agent(sim_node, f"--metrics-endpoint=http://127.0.0.1:{port}/metrics")
    apply(kubectl, namespace, task("web", sim_node.name, images["service"]))
    apply(
        kubectl,
        namespace,
        task("broken", sim_node.name, tmp_path / "missing.aci", restartPolicy="Never"),
    )
    web = wait_task(kubectl, namespace, "web", phase_is("Running"), what="Running")
    wait_task(
        kubectl,
        namespace,
        "broken",
        # a prepare refused by rkt is retried with the back-off (the image may arrive)
        lambda o: condition(o, "Reconciling").get("reason") == "PrepareFailed",
        what="the prepare failure reported",
    )
    labels = (("name", "web"), ("namespace", namespace), ("uuid", web["status"]["uuid"]))

    def with_task_series() -> Series | None:
        series = scrape(port)
        if series is None or ("rktoperator_task_memory_rss_bytes", labels) not in series:
            return None
        # The first fingerprint runs beside the first reconciles; wait for it too.
        return series if ("rktoperator_rkt_healthy", ()) in series else None

    series = wait_for(with_task_series, timeout=180, interval=1, what="the task's series")
    assert series[("rktoperator_task_memory_rss_bytes", labels)] > 0
    assert series[("rktoperator_task_cpu_seconds_total", labels)] > 0
    assert series[("rktoperator_task_processes", labels)] >= 2
    assert series[("rktoperator_pods", (("state", "running"),))] == 1
    assert series[("rktoperator_pod_collection_success", ())] == 1
    prepares = (("subcommand", "prepare"),)
    assert series[("rktoperator_rkt_command_duration_seconds_count", prepares)] >= 2
    errors = {k[1]: v for k, v in series.items() if k[0] == "rktoperator_reconcile_errors_total"}
    assert errors[(("reason", "PrepareFailed"),)] >= 1
    assert series[("rktoperator_rkt_healthy", ())] == 1
    (info,) = [dict(k[1]) for k in series if k[0] == "rktoperator_rkt_info"]
    assert info["version"].startswith("1.")
    assert info["appc_version"]
    assert series[("rktoperator_build_info", (("version", __version__),))] == 1


def test_exec_signal_and_stats_on_a_running_task(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    hup_image: Path,
) -> None:
    start_agent(sim_node)
    apply(kubectl, namespace, task("app", sim_node.name, hup_image))
    obj = wait_task(kubectl, namespace, "app", phase_is("Running"), what="Running")
    uuid = obj["status"]["uuid"]
    ref = f"{namespace}/app"

    done = node_command(
        sim_node, "exec", ref, "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout == "out\n"
    assert "err\n" in done.stderr  # kept apart, as Nomad's streaming exec did
    ok = node_command(sim_node, "exec", ref, "--", "/bin/cat", "/proc/self/cmdline")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split("\0")[0] == "/bin/cat"

    host_file = task_dir(sim_node, namespace, "app", obj["metadata"]["uid"]) / "local" / "hup"
    assert not host_file.exists()
    sent = node_command(sim_node, "signal", ref, "HUP")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == f"sent SIGHUP to {ref} (pod {uuid})"
    wait_for(host_file.exists, timeout=120, what="the app's HUP trap to write /local/hup")
    assert host_file.read_text().startswith("hup")

    stats = node_command(sim_node, "stats", ref)
    assert stats.returncode == 0, stats.stderr
    sample = json.loads(stats.stdout)
    assert sample["uuid"] == uuid
    assert (sample["namespace"], sample["name"]) == (namespace, "app")
    assert sample["rssBytes"] > 0
    assert sample["processes"] >= 2
    assert sample["cpuSeconds"] > 0
    # The task survived the signal: same pod, still running.
    again = wait_task(kubectl, namespace, "app", phase_is("Running"), what="still Running")
    assert again["status"]["uuid"] == uuid

    # What kubectl rkt describe shows of the node: the task's pods as rkt reports them.
    pods = node_command(sim_node, "pods", ref, f"--uid={obj['metadata']['uid']}")
    assert pods.returncode == 0, pods.stderr
    [pod] = json.loads(pods.stdout)
    assert (pod["uuid"], pod["state"], pod["uid"]) == (uuid, "running", obj["metadata"]["uid"])
    assert pod["generation"] == obj["metadata"]["generation"]
    assert pod["startedAt"]
    assert pod["createdAt"]
    # --uid (kubectl rkt passes the uid it read): another object of that name is refused.
    other = "99999999-9999-4999-8999-999999999999"
    for command in (["stats", ref], ["signal", ref, "HUP"], ["exec", ref, "--", "true"]):
        refused = node_command(sim_node, command[0], f"--uid={other}", *command[1:])
        assert refused.returncode == 1, refused.stderr
        assert f"no running pod of task {ref} (uid {other}) on this node" in refused.stderr
    assert json.loads(node_command(sim_node, "pods", ref, f"--uid={other}").stdout) == []
    mine = node_command(sim_node, "stats", ref, f"--uid={obj['metadata']['uid']}")
    assert json.loads(mine.stdout)["uuid"] == uuid


def test_node_commands_report_a_missing_task_and_bad_arguments(sim_node: SimNode) -> None:
    missing = node_command(sim_node, "stats", "default/nothing-here")
    assert missing.returncode == 1
    assert "no running pod of task default/nothing-here" in missing.stderr
    assert missing.stdout == ""
    bad_ref = node_command(sim_node, "exec", "no-slash", "--", "true")
    assert bad_ref.returncode == 2
    assert "NAMESPACE/NAME" in bad_ref.stderr
    bad_signal = node_command(sim_node, "signal", "default/x", "NOPE")
    assert bad_signal.returncode == 2
    assert "unknown signal" in bad_signal.stderr
