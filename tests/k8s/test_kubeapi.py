"""The agent's own API calls (``kubeapi.KubeApi``) against the real kube-apiserver: they go
over aiohttp, not the official client, so what they read and write, how a missing object or
a refused request comes back, and both ways of connecting (the kubeconfig as kopf reads it,
with a client certificate or a token; the in-cluster token file, re-read when it changes)
are checked here. ``release-orphans``' calls (``kubeclient.AdminApi``) are checked too."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from fixtures_k8s import Kubectl, configmap_reader
from rkt_devkit.controlplane import ControlPlane
from rkt_operator import errors, kopfapp, kubeapi, kubeclient
from rkt_operator.settings import InClusterAccess
from spec_cases import BASE_SPEC, manifest

pytestmark = pytest.mark.k8s

T = TypeVar("T")
Use = Callable[[Callable[[kubeapi.KubeApi], Awaitable[T]]], T]


def _user(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Use[Any]:
    """Run ``calls(api)`` in a fresh event loop with a KubeApi connected as the kubeconfig's
    user (read by kopf's reader, as the agent does outside a pod); the session is closed."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    endpoint = kopfapp.agent_endpoint(None)

    def use(calls: Callable[[kubeapi.KubeApi], Awaitable[Any]]) -> Any:
        async def session() -> Any:
            api = kubeapi.KubeApi(endpoint)
            try:
                return await calls(api)
            finally:
                await api.close()

        return asyncio.run(session())

    return use


@pytest.fixture
def api(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Use[Any]:
    """The admin, whose kubeconfig holds an embedded client certificate and key."""
    return _user(kubeconfig, monkeypatch)


def _create(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def test_secret_and_configmap_values(kubectl: Kubectl, namespace: str, api: Use[Any]) -> None:
    raw = base64.b64encode(b"s3cr\xc3\xa9t").decode()
    _create(kubectl, namespace, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"password": raw}, "stringData": {"user": "alice"},
    })  # fmt: skip
    _create(kubectl, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
        "data": {"mode": "fast"}, "binaryData": {"blob": base64.b64encode(b"bin").decode()},
    })  # fmt: skip

    async def read(api: kubeapi.KubeApi) -> list[str | None]:
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

    assert api(read) == ["s3cr\u00e9t", "alice", None, None, "fast", "bin", None, None]


def test_status_patch_returns_the_object_and_none_when_gone(
    kubectl: Kubectl, namespace: str, api: Use[Any]
) -> None:
    _create(kubectl, namespace, manifest(BASE_SPEC, "patched"))

    async def patches(api: kubeapi.KubeApi) -> tuple[Any, Any, kubeapi.ApiError]:
        written = await api.patch_task_status(namespace, "patched", {"phase": "Pending"})
        gone = await api.patch_task_status(namespace, "no-such-task", {"phase": "Pending"})
        with pytest.raises(kubeapi.ApiError) as refused:  # the CRD's schema refuses it
            await api.patch_task_status(namespace, "patched", {"phase": "Nonsense"})
        return written, gone, refused.value

    written, gone, refused = api(patches)
    assert written is not None
    assert written["status"]["phase"] == "Pending"
    assert int(written["metadata"]["resourceVersion"]) > 0
    got = json.loads(kubectl("get", "rkttask", "patched", "-n", namespace, "-o", "json").stdout)
    assert got["status"]["phase"] == "Pending"
    assert gone is None
    assert refused.status == 422
    assert refused.reason == "Invalid"  # the Status object's reason, not the HTTP phrase
    assert "Nonsense" in refused.message
    assert kubeapi.outage(refused) is None  # a 4xx: no retry will help


def test_node_labels_and_the_node_tasks_list(
    kubectl: Kubectl, kubeconfig: Path, namespace: str, api: Use[Any]
) -> None:
    name = "kubeapi-test-node"
    _create(kubectl, "default", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    _create(kubectl, namespace, manifest({**BASE_SPEC, "nodeName": name}, "on-node"))

    async def calls(api: kubeapi.KubeApi) -> list[Any]:
        on = await api.label_node(name, {"rktoperator.io/rkt": "true"})
        labelled = json.loads(kubectl("get", "node", name, "-o", "json").stdout)
        off = await api.label_node(name, {"rktoperator.io/rkt": None})
        return [
            on, labelled["metadata"]["labels"].get("rktoperator.io/rkt"), off,
            await api.label_node("no-such-node", {"a": "b"}),
            await api.list_node_tasks(field_selector=f"spec.nodeName={name}"),
            await api.list_node_tasks(field_selector="spec.nodeName=no-such-node"),
        ]  # fmt: skip

    try:
        assert api(calls) == [True, "true", True, False, 1, 0]
        node = json.loads(kubectl("get", "node", name, "-o", "json").stdout)
        assert "rktoperator.io/rkt" not in (node["metadata"].get("labels") or {})
        admin = kubeclient.AdminApi(kubeclient.connect(str(kubeconfig)))
        assert name in admin.list_node_names()
        tasks = {(t["metadata"]["namespace"], t["metadata"]["name"]) for t in admin.list_tasks()}
        assert (namespace, "on-node") in tasks
        assert admin.get_task(namespace, "on-node") is not None
        assert admin.get_task(namespace, "no-such-task") is None
    finally:
        kubectl("delete", "node", name, "--wait=false", check=False)


def test_task_event_is_posted_once_per_key(kubectl: Kubectl, namespace: str, api: Use[Any]) -> None:
    _create(kubectl, namespace, manifest(BASE_SPEC, "evented"))
    task = json.loads(kubectl("get", "rkttask", "evented", "-n", namespace, "-o", "json").stdout)

    async def post_twice(api: kubeapi.KubeApi) -> list[bool]:
        return [
            await api.post_task_event(
                task,
                key="restart/1/1",
                type_="Normal",
                reason="Restarting",
                message="restart 1",
                instance="node-a",
                now=datetime.now(UTC),
            )
            for _ in range(2)
        ]

    assert api(post_twice) == [True, False]  # the same key again: found, not doubled
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    mine = [e for e in events if e["involvedObject"].get("name") == "evented"]
    assert [(e["reason"], e["message"], e["type"]) for e in mine] == [
        ("Restarting", "restart 1", "Normal")
    ]
    assert mine[0]["involvedObject"]["uid"] == task["metadata"]["uid"]


def _reader(control_plane: ControlPlane, kubectl: Kubectl, namespace: str) -> str:
    """A token of a ServiceAccount that may get ConfigMaps only (``configmap_reader``)."""
    configmap_reader(kubectl, namespace)
    return control_plane.create_token(namespace, "reader", duration=600)


def test_a_token_kubeconfig_authenticates_as_its_user(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    token = _reader(control_plane, kubectl, namespace)
    reader = _user(control_plane.kubeconfig_for_token(token, tmp_path / "kc"), monkeypatch)

    async def calls(api: kubeapi.KubeApi) -> tuple[str | None, kubeapi.ApiError]:
        colour = await api.configmap_value(namespace, "settings", "colour")
        with pytest.raises(kubeapi.ApiError) as denied:
            await api.secret_value(namespace, "creds", "password")
        return colour, denied.value

    colour, denied = reader(calls)
    assert colour == "blue"
    assert denied.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in denied.message


def test_in_cluster_access_reads_the_token_file_before_each_request(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    token = _reader(control_plane, kubectl, namespace)
    (tmp_path / "token").write_text(token)
    (tmp_path / "namespace").write_text(namespace)
    where = urlsplit(control_plane.server)
    access = InClusterAccess(
        host=str(where.hostname), port=str(where.port), token_file=tmp_path / "token",
        ca_file=control_plane.pki.ca_cert, namespace_file=tmp_path / "namespace",
    )  # fmt: skip

    async def calls(api: kubeapi.KubeApi) -> tuple[str | None, kubeapi.ApiError, str | None]:
        before = await api.configmap_value(namespace, "settings", "colour")
        (tmp_path / "token").write_text("not-a-token-any-more")  # the kubelet rotated it
        with pytest.raises(kubeapi.ApiError) as refused:
            await api.configmap_value(namespace, "settings", "colour")
        (tmp_path / "token").write_text(token)
        return before, refused.value, await api.configmap_value(namespace, "settings", "colour")

    async def session() -> Any:
        api = kubeapi.KubeApi(kopfapp.agent_endpoint(access))
        try:
            return await calls(api)
        finally:
            await api.close()

    before, refused, after = asyncio.run(session())
    assert (before, after) == ("blue", "blue")
    assert refused.status == 401
    assert "not-a-token" not in str(refused)  # a token never shows in an error


def test_an_unreachable_server_is_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))  # fmt: skip
    nowhere = _user(kubeconfig, monkeypatch)

    async def call(api: kubeapi.KubeApi) -> BaseException:
        with pytest.raises(Exception) as failed:
            await api.configmap_value("default", "conf", "k")
        with pytest.raises(errors.EventNotPosted):
            await api.post_task_event(
                manifest(BASE_SPEC, "t"), key="k", type_="Normal", reason="R", message="m",
                instance="node-a", now=datetime.now(UTC),
            )  # fmt: skip
        return failed.value

    assert kubeapi.outage(nowhere(call)) is not None
