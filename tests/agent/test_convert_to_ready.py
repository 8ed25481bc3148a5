"""A Nomad job converted by ``rkt-operator convert`` and piped to ``kubectl apply -f -``
runs: every instance of its rkt tasks becomes Ready under an agent on the simulator, with
the task environment the Nomad driver gave (NOMAD_* variables, interpolated env)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from agentlib import StartAgent, condition, phase_is, task_dir, wait_task

from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for
from rkt_operator.convert import command

pytestmark = pytest.mark.k8s

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
