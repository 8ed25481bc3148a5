"""Environment resolution by the agent: Secrets, ConfigMaps and fieldRefs reach the app; a
missing Secret holds the task back (condition, event, retry) until it appears; a Secret's
value never shows in the status, the events or the agent's log (even at DEBUG)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from agentlib import (
    StartAgent,
    apply,
    condition,
    events,
    get,
    phase_is,
    pods,
    task,
    task_dir,
    wait_task,
)

from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for

pytestmark = pytest.mark.k8s

SECRET_VALUE = "s3cr3t-Value-9f1c2e"


def _env_file(sim_node: SimNode, namespace: str, name: str, uid: str) -> dict[str, str]:
    path = task_dir(sim_node, namespace, name, uid) / "alloc" / "env.txt"
    text = wait_for(lambda: path.exists() and path.read_text(), what=f"{path}")
    return dict(line.split("=", 1) for line in str(text).splitlines() if "=" in line)


def test_env_from_secret_configmap_and_fields_with_missing_secret_recovery(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(sim_node, "--log-level=DEBUG")
    kubectl(
        "create", "configmap", "settings", f"--namespace={namespace}",
        "--from-literal=mode=fast",
    )  # fmt: skip
    env = [
        {"name": "PLAIN", "value": "literal"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {
            "name": "MAYBE",
            "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}},
        },
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {
            "name": "TIER",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}},
        },
    ]
    manifest = task("envy", sim_node.name, images["envdump"], env=env)
    manifest["metadata"]["labels"] = {"tier": "gold"}
    apply(kubectl, namespace, manifest)

    # 1. The Secret is missing: a condition says so and no pod is started.
    held = wait_task(
        kubectl,
        namespace,
        "envy",
        lambda o: condition(o, "Ready").get("reason") == "DependencyMissing",
        what="DependencyMissing",
    )
    assert condition(held, "Reconciling")["status"] == "True"
    assert condition(held, "Stalled")["status"] == "False"
    assert "Secret" in condition(held, "Ready")["message"]
    assert "creds" in condition(held, "Ready")["message"]
    assert held["status"]["phase"] == "Pending"
    assert pods(sim_node) == []
    assert any(e["reason"] == "DependencyMissing" for e in events(kubectl, namespace, "envy"))

    # 2. The Secret appears: the retry (with back-off) starts the pod.
    kubectl(
        "create", "secret", "generic", "creds", f"--namespace={namespace}",
        f"--from-literal=token={SECRET_VALUE}",
    )  # fmt: skip
    obj = wait_task(kubectl, namespace, "envy", phase_is("Running"), what="Running")
    seen = _env_file(sim_node, namespace, "envy", obj["metadata"]["uid"])
    assert seen["PLAIN"] == "literal"
    assert seen["TOKEN"] == SECRET_VALUE
    assert seen["MODE"] == "fast"
    assert seen["MY_NAME"] == "envy"
    assert seen["MY_NODE"] == sim_node.name
    assert seen["TIER"] == "gold"
    assert "MAYBE" not in seen  # optional and missing: left out

    # 3. The value is nowhere but in the app: not in status, events, the agent's log, argv.
    assert SECRET_VALUE not in json.dumps(obj)
    assert SECRET_VALUE not in json.dumps(events(kubectl, namespace, "envy"))
    assert SECRET_VALUE not in agent.log()
    for pod in pods(sim_node):
        status = json.dumps(pod)
        assert SECRET_VALUE not in status


def test_missing_configmap_key_names_the_key(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    kubectl("create", "configmap", "cm", f"--namespace={namespace}", "--from-literal=a=1")
    env = [{"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "b"}}}]
    apply(kubectl, namespace, task("cmk", sim_node.name, images["service"], env=env))
    held = wait_task(
        kubectl,
        namespace,
        "cmk",
        lambda o: condition(o, "Ready").get("reason") == "DependencyMissing",
        what="DependencyMissing",
    )
    message = condition(held, "Ready")["message"]
    # then how often the start failed so far, and when it is tried again
    assert re.fullmatch(
        rf"spec\.env\[0\] \(B\): ConfigMap {namespace}/cm or its key 'b' not found; "
        r"\d+ failed starts?, next try at \S+Z",
        message,
    ), message
    # an unrelated edit of the ConfigMap that adds the key lets the task start
    kubectl(
        "patch", "configmap", "cm", f"--namespace={namespace}", "--type=merge",
        "-p", '{"data":{"b":"2"}}',
    )  # fmt: skip
    wait_task(kubectl, namespace, "cmk", phase_is("Running"), what="Running")
    assert get(kubectl, namespace, "cmk") is not None
