"""The agent's own API calls (``kubeapi.KubeApi``) against the real kube-apiserver: they go
through a lean request helper instead of the client's generated classes, so what they read
and write, and how a missing object or a refused request comes back, is checked here."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fixtures_k8s import Kubectl
from rkt_operator import kubeapi
from spec_cases import BASE_SPEC, manifest

pytestmark = pytest.mark.k8s


@pytest.fixture
def api(kubeconfig: Path) -> kubeapi.KubeApi:
    return kubeapi.KubeApi(kubeapi.connect(str(kubeconfig)))


def _create(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def test_secret_and_configmap_values(
    kubectl: Kubectl, namespace: str, api: kubeapi.KubeApi
) -> None:
    raw = base64.b64encode(b"s3cr\xc3\xa9t").decode()
    _create(kubectl, namespace, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"password": raw}, "stringData": {"user": "alice"},
    })  # fmt: skip
    _create(kubectl, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
        "data": {"mode": "fast"}, "binaryData": {"blob": base64.b64encode(b"bin").decode()},
    })  # fmt: skip

    async def read() -> list[str | None]:
        return [
            await api.secret_value(namespace, "creds", "password"),
            await api.secret_value(namespace, "creds", "user"),  # stored as data
            await api.secret_value(namespace, "creds", "absent"),
            await api.secret_value(namespace, "no-such-secret", "password"),
            await api.configmap_value(namespace, "conf", "mode"),
            await api.configmap_value(namespace, "conf", "blob"),
            await api.configmap_value(namespace, "conf", "absent"),
            await api.configmap_value(namespace, "no-such-map", "mode"),
        ]

    assert asyncio.run(read()) == ["s3cr\u00e9t", "alice", None, None, "fast", "bin", None, None]


def test_status_patch_returns_the_object_and_none_when_gone(
    kubectl: Kubectl, namespace: str, api: kubeapi.KubeApi
) -> None:
    _create(kubectl, namespace, manifest(BASE_SPEC, "patched"))

    async def patch(name: str) -> Any:
        return await api.patch_task_status(namespace, name, {"phase": "Pending", "restarts": 0})

    written = asyncio.run(patch("patched"))
    assert written is not None
    assert written["status"]["phase"] == "Pending"
    assert int(written["metadata"]["resourceVersion"]) > 0
    got = json.loads(kubectl("get", "rkttask", "patched", "-n", namespace, "-o", "json").stdout)
    assert got["status"]["phase"] == "Pending"
    assert asyncio.run(patch("no-such-task")) is None
    with pytest.raises(ApiException) as refused:  # the CRD's schema refuses it
        asyncio.run(api.patch_task_status(namespace, "patched", {"phase": "Nonsense"}))
    assert refused.value.status == 422


def test_node_labels_and_names(kubectl: Kubectl, api: kubeapi.KubeApi) -> None:
    name = "kubeapi-test-node"
    _create(kubectl, "default", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    try:
        assert asyncio.run(api.label_node(name, {"rktoperator.io/rkt": "true"}))
        node = json.loads(kubectl("get", "node", name, "-o", "json").stdout)
        assert node["metadata"]["labels"]["rktoperator.io/rkt"] == "true"
        assert asyncio.run(api.label_node(name, {"rktoperator.io/rkt": None}))
        node = json.loads(kubectl("get", "node", name, "-o", "json").stdout)
        assert "rktoperator.io/rkt" not in (node["metadata"].get("labels") or {})
        assert name in api.list_node_names()
        assert not asyncio.run(api.label_node("no-such-node", {"a": "b"}))
    finally:
        kubectl("delete", "node", name, "--wait=false", check=False)


def test_task_event_is_posted_once_per_key(
    kubectl: Kubectl, namespace: str, api: kubeapi.KubeApi
) -> None:
    _create(kubectl, namespace, manifest(BASE_SPEC, "evented"))
    task = json.loads(kubectl("get", "rkttask", "evented", "-n", namespace, "-o", "json").stdout)

    async def post() -> bool:
        return await api.post_task_event(
            task, key="restart/1/1", type_="Normal", reason="Restarting",
            message="restart 1", instance="node-a", now=datetime.now(UTC),
        )  # fmt: skip

    assert asyncio.run(post()) is True
    assert asyncio.run(post()) is False  # the same key: found, not doubled
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    mine = [e for e in events if e["involvedObject"].get("name") == "evented"]
    assert [(e["reason"], e["message"], e["type"]) for e in mine] == [
        ("Restarting", "restart 1", "Normal")
    ]
    assert mine[0]["involvedObject"]["uid"] == task["metadata"]["uid"]
