"""A Nomad job converted by ``rkt-operator convert`` and piped to ``kubectl apply -f -``
runs: every instance of its rkt tasks becomes Ready under an agent on the simulator, with
the task environment the Nomad driver gave (NOMAD_* variables, interpolated env); the
example jobs run on two nodes with the demo's images; and without --node the binder
places the converted tasks by the nodeSelector their constraints became."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from agentlib import StartAgent, condition, node, phase_is, task_dir, wait_task

from binderlib import BinderProcess, set_node_status
from rkt_devkit import demo_images
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for
from rkt_operator.convert import command

pytestmark = pytest.mark.k8s
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "nomad"

JOB = """
# HCL1, as written for Nomad 0.8
job "shop" {
  group "web" {
    count = 2
    task "app" {
      driver = "rkt"
      config {
        image            = "%(service)s"
        insecure_options = ["image"]
        port_map {
          http = "http"
        }
      }
      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
  group "env" {
    task "dump" {
      driver = "rkt"
      config {
        image            = "%(envdump)s"
        insecure_options = ["image"]
        net              = ["none"]
      }
      env {
        GREETING = "hello ${NOMAD_TASK_NAME}"
      }
    }
  }
}
"""


def test_converted_nomad_job_runs_to_ready(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
    tmp_path: Path,
) -> None:
    job = tmp_path / "shop.nomad"
    job.write_text(JOB % {"service": images["service"], "envdump": images["envdump"]})
    out, err = io.StringIO(), io.StringIO()
    code = command.run(
        command.parse([f"--node={sim_node.name}", str(job)]), io.StringIO(), out, err
    )
    assert code == 0, err.getvalue()
    start_agent(sim_node)
    kubectl("apply", f"--namespace={namespace}", "-f", "-", input=out.getvalue())
    for name in ("shop-web-app-0", "shop-web-app-1"):
        obj = wait_task(
            kubectl, namespace, name,
            lambda o: phase_is("Running")(o) and condition(o, "Ready").get("status") == "True",
            what="Running and Ready",
        )  # fmt: skip
        assert obj["status"]["portMap"] == {"http": 8080}
        assert obj["spec"]["nodeName"] == sim_node.name
    dump = wait_task(kubectl, namespace, "shop-env-dump", phase_is("Running"), what="Running")
    path = task_dir(sim_node, namespace, "shop-env-dump", dump["metadata"]["uid"]) / "alloc"
    text = wait_for(lambda: (path / "env.txt").exists() and (path / "env.txt").read_text(),
                    what="env.txt")  # fmt: skip
    env = dict(line.split("=", 1) for line in str(text).splitlines() if "=" in line)
    assert env["GREETING"] == "hello dump"
    assert env["NOMAD_TASK_NAME"] == "dump"
    assert env["NOMAD_GROUP_NAME"] == "env"
    assert env["NOMAD_JOB_NAME"] == "shop"
    assert env["NOMAD_ALLOC_INDEX"] == "0"
    assert env["NOMAD_ALLOC_NAME"] == "shop.env[0]"
    assert env["NOMAD_TASK_DIR"] == "/local"
    assert env["NOMAD_ALLOC_ID"] == dump["metadata"]["uid"]


def _convert(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = command.run(command.parse(list(argv)), io.StringIO(), out, err)
    assert code == 0, err.getvalue()
    return out.getvalue()


def test_the_example_nomad_jobs_run_on_two_nodes_with_the_demo_images(
    kubectl: Kubectl,
    namespace: str,
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    # The demo's setup in small: two nodes, the demo's images in their stores, one agent each.
    images = demo_images.build(tmp_path / "images")
    nodes = [node(f"{namespace}-a", tmp_path), node(f"{namespace}-b", tmp_path)]
    for sim in nodes:
        for aci in images:
            sim.fetch(aci)
        start_agent(sim)
    node_a, node_b = (n.name for n in nodes)
    manifests = _convert(f"--node={node_a}", f"--node={node_b}", str(EXAMPLES / "ticker.nomad"))
    manifests += "---\n" + _convert(f"--node={node_b}", str(EXAMPLES / "hello.nomad"))
    kubectl("apply", f"--namespace={namespace}", "-f", "-", input=manifests)

    for index, sim in enumerate(nodes):
        name = f"ticker-clock-tick-{index}"
        obj = wait_task(
            kubectl, namespace, name,
            lambda o: phase_is("Running")(o) and condition(o, "Ready").get("status") == "True",
            what="Running and Ready",
        )  # fmt: skip
        assert obj["spec"]["nodeName"] == sim.name  # instance i on the i-th --node
        ticks = task_dir(sim, namespace, name, obj["metadata"]["uid"]) / "local" / "ticks"
        # Two ticks: the loop runs, with the job's interpolation done ($(date) by the shell).
        text = wait_for(
            lambda t=ticks: t.exists() and t.read_text().count("\n") >= 2 and t.read_text(),
            what=f"{ticks}",
        )  # fmt: skip
        assert str(text).startswith(f"ticker.clock[{index}] ")
        assert "$(date)" not in str(text)
        again = wait_task(kubectl, namespace, name, phase_is("Running"), what="still Running")
        assert again["status"]["restarts"] == 0
    done = wait_task(kubectl, namespace, "hello-greet-echo", phase_is("Succeeded"), what="done")
    uid, uuid = done["metadata"]["uid"], done["status"]["uuid"]
    log = task_dir(nodes[1], namespace, "hello-greet-echo", uid) / "alloc" / "logs"
    text = wait_for(lambda: (log / f"{uuid}.stdout.0").read_text(), what="the job's output")
    assert "hello from echo, alloc hello.greet[0]" in str(text)


BOUND_BY_CONSTRAINTS = """
job "placed" {
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }
  group "web" {
    count = 2
    constraint {
      attribute = "${meta.convert-run}"
      value     = "%(run)s"
    }
    task "app" {
      driver = "rkt"
      config {
        image            = "%(image)s"
        insecure_options = ["image"]
      }
    }
  }
}
"""


def test_without_node_the_binder_places_the_converted_job_by_its_constraints(
    kubectl: Kubectl,
    kubeconfig: Path,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
    tmp_path: Path,
) -> None:
    run = namespace[-12:]
    labels = {"kubernetes.io/os": "linux", "convert-run": run, "rktoperator.io/rkt": "true"}
    node_body = {"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": sim_node.name, "labels": labels}}  # fmt: skip
    kubectl("create", "-f", "-", input=json.dumps(node_body))
    binder = BinderProcess(
        kubeconfig=kubeconfig, log_path=tmp_path / "binder.log", lease_namespace=namespace,
        identity="b1", lease_name=f"binder-{run}",
    )  # fmt: skip
    try:
        set_node_status(
            kubectl, sim_node.name, ready=True, allocatable={"cpu": "4", "memory": "8Gi"}
        )
        start_agent(sim_node)
        binder.start()
        job = tmp_path / "placed.nomad"
        job.write_text(BOUND_BY_CONSTRAINTS % {"run": run, "image": images["service"]})
        manifests = _convert(str(job))  # no --node
        kubectl("apply", f"--namespace={namespace}", "-f", "-", input=manifests)
        for name in ("placed-web-app-0", "placed-web-app-1"):
            obj = wait_task(
                kubectl, namespace, name,
                lambda o: phase_is("Running")(o) and condition(o, "Ready").get("status") == "True",
                what="bound, Running and Ready",
            )  # fmt: skip
            assert obj["spec"]["nodeName"] == sim_node.name
            assert obj["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", "convert-run": run}
    finally:
        binder.stop()
        kubectl("delete", "node", sim_node.name, "--wait=false", check=False)
