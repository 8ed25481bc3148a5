"""The release path for tasks whose node is gone: ``rkt-operator release-orphans`` drops the
finalizer of tasks being deleted whose spec.nodeName names no Node, and nothing else."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from agentlib import BIN, apply, get, task

from rkt_devkit.kube import Kubectl, unique_name, wait_for

pytestmark = pytest.mark.k8s

FINALIZER = "rktoperator.io/finalizer"


def _release(kubeconfig: Path, *args: str) -> list[str]:
    done = subprocess.run(
        [str(BIN / "rkt-operator"), "release-orphans", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_release_orphans_frees_only_tasks_of_vanished_nodes(
    kubectl: Kubectl, kubeconfig: Path, namespace: str, images: dict[str, Path]
) -> None:
    alive = unique_name("alive", max_length=30)
    gone = unique_name("gone", max_length=30)
    kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": alive}}
    ))  # fmt: skip
    try:
        for name, node_name in (("lost", gone), ("held", alive), ("idle", gone)):
            manifest = task(name, node_name, images["service"])
            manifest["metadata"]["finalizers"] = [FINALIZER]  # as an agent would have added
            apply(kubectl, namespace, manifest)
        kubectl("delete", f"--namespace={namespace}", "rkt/lost", "rkt/held", "--wait=false")

        dry = [line for line in _release(kubeconfig, "--dry-run") if f" {namespace}/" in line]
        assert f"would release {namespace}/lost node={gone}" in dry
        assert not any(f"{namespace}/held" in line for line in dry)
        assert f"unbound {namespace}/idle node={gone} (not being deleted: left alone)" in dry
        assert get(kubectl, namespace, "lost") is not None  # dry run changed nothing

        out = [line for line in _release(kubeconfig) if f" {namespace}/" in line]
        assert f"released {namespace}/lost node={gone}" in out
        wait_for(lambda: get(kubectl, namespace, "lost") is None, what="lost to go")
        held = get(kubectl, namespace, "held")
        assert held is not None
        assert held["metadata"]["finalizers"] == [FINALIZER]  # its node exists: its agent's job
        idle = get(kubectl, namespace, "idle")
        assert idle is not None
        assert idle["metadata"]["finalizers"] == [FINALIZER]
        # running it again is harmless
        again = [line for line in _release(kubeconfig) if f" {namespace}/lost" in line]
        assert again == []
    finally:
        kubectl(
            "patch", f"--namespace={namespace}", "rkt/held", "rkt/idle", "--type=merge",
            "-p", '{"metadata":{"finalizers":[]}}', check=False,
        )  # fmt: skip
        kubectl("delete", "node", alive, "--wait=false", check=False)
