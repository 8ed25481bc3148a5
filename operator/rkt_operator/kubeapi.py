"""The few Kubernetes API calls the agent makes besides kopf's own watching and patching.

Reading one Secret or ConfigMap key for a task's env, merge-patching a task's status, labelling
this agent's Node, and (for ``rkt-operator release-orphans``) listing Nodes and tasks and
dropping the finalizer. The official ``kubernetes`` client is synchronous; every call here runs
in a worker thread (``asyncio.to_thread``) so the event loop never blocks. Values read from
Secrets are returned to the caller only: never logged here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rkt_operator import apiaccess, errors
from rkt_operator.model import api
from rkt_operator.settings import InClusterAccess

log = logging.getLogger(__name__)

GROUP = api.GROUP
VERSION = api.VERSION
PLURAL = api.PLURAL
FINALIZER = api.FINALIZER
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT = 30.0
# The events the agent posts itself are reported as kopf's are (kopfapp sets kopf's posting
# component to this).
REPORTING_COMPONENT = "rkt-operator"


def connect(
    kubeconfig: str | None = None, *, access: InClusterAccess | None = None
) -> client.ApiClient:
    """An API client: with ``access`` (in a pod), client-go's in-cluster way (service host and
    port variables, the ServiceAccount token re-read on rotation, its CA; see ``apiaccess``);
    else the kubeconfig (``kubeconfig`` or the client's usual ``KUBECONFIG`` /
    ``~/.kube/config`` lookup)."""
    if access is not None and kubeconfig is None:
        return client.ApiClient(apiaccess.client_configuration(access))
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=configuration
    )
    return client.ApiClient(configuration)


def outage(exc: BaseException) -> str | None:
    """A short description when ``exc`` means the API server is unreachable or failing
    (connection refused or reset, timeout, 5xx, 429): a retry later can succeed, and a
    traceback says nothing more. None for anything else (a bug, a 4xx)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ApiException):
            status = current.status or 0
            if status == 0 or status == 429 or status >= 500:
                return f"HTTP {status} {current.reason or ''}".strip()
            return None
        if isinstance(current, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
            first = (str(current).strip().splitlines() or [""])[0]
            return f"{type(current).__name__}: {first[:160]}".rstrip(": ")
        current = current.__cause__ or current.__context__
    return None


def _not_found(exc: ApiException) -> bool:
    return bool(exc.status == 404)


def _decode(encoded: bytes | str) -> str | None:
    """A base64 data value as text (None when it is not valid base64)."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", errors="replace")


class KubeApi:
    """Async facade over the synchronous client; one instance per process.

    The agent's own calls (Secret and ConfigMap reads, task status patches, the task events
    it posts itself, Node labels) go through ``_request``: the client's configuration,
    credentials and connection pool, but not its generated API classes. ``CoreV1Api``
    imports the client's pydantic model of every core type (about 20 MiB of the agent's
    memory and seconds of its start-up), and every generated method validates its
    arguments with pydantic on each call; the agent reads a few fields of the JSON it gets
    back."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client
        self._custom = client.CustomObjectsApi(api_client)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        """One request (blocking): ``path`` with ``{name}`` placeholders filled (escaped)
        from ``params``; the decoded JSON answer. Raises ``ApiException`` (``status``,
        ``reason``) for an answer outside 2xx, as the client's API classes do."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self._client.param_serialize(
            method=method,
            resource_path=path,
            path_params=dict(params or {}),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        verb, url, header_params, payload, post_params = serialized
        response = self._client.call_api(
            verb, url, header_params=header_params, body=payload, post_params=post_params,
            _request_timeout=timeout,
        )  # fmt: skip
        response.read()  # type: ignore[no-untyped-call]
        raw: bytes = response.data or b""
        if not 200 <= response.status <= 299:
            text = raw.decode("utf-8", "replace")
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        return json.loads(raw) if raw else None

    # -- env sources -------------------------------------------------------------------

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value of ``key`` in Secret ``name``; None if the Secret or key is absent."""
        secret = await self._read_or_none("secrets", namespace, name)
        if secret is None:
            return None
        data = secret.get("data") or {}
        if isinstance(data, Mapping) and isinstance(data.get(key), str):
            return _decode(data[key])
        string_data = secret.get("stringData") or {}
        value = string_data.get(key) if isinstance(string_data, Mapping) else None
        return value if isinstance(value, str) else None

    async def configmap_value(self, namespace: str, name: str, key: str) -> str | None:
        """The value of ``key`` in ConfigMap ``name``; None if the ConfigMap or key is absent."""
        cm = await self._read_or_none("configmaps", namespace, name)
        if cm is None:
            return None
        data = cm.get("data") or {}
        if isinstance(data, Mapping) and isinstance(data.get(key), str):
            return str(data[key])
        binary = cm.get("binaryData") or {}
        value = binary.get(key) if isinstance(binary, Mapping) else None
        return _decode(value) if isinstance(value, str) else None

    async def _read_or_none(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """GET one core object (``kind``: ``secrets``, ``configmaps``) in a thread; None when
        it does not exist."""

        def call() -> Mapping[str, Any] | None:
            try:
                obj = self._request(
                    "GET",
                    f"/api/v1/namespaces/{{namespace}}/{kind}/{{name}}",
                    params={"namespace": namespace, "name": name},
                )
            except ApiException as exc:
                if _not_found(exc):
                    return None
                raise
            return obj if isinstance(obj, Mapping) else None

        return await asyncio.to_thread(call)

    # -- tasks -------------------------------------------------------------------------

    async def patch_task_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """Merge-patch ``.status`` of a task; returns the updated object (None if the task is
        gone, which is fine: it was deleted meanwhile)."""

        def send() -> Mapping[str, Any] | None:
            try:
                obj = self._request(
                    "PATCH",
                    f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}/status",
                    params={"namespace": namespace, "name": name},
                    body={"status": dict(patch)},
                    content_type=MERGE_PATCH,
                )
            except ApiException as exc:
                if _not_found(exc):
                    return None
                raise
            return obj if isinstance(obj, dict) else None

        return await asyncio.to_thread(send)

    async def post_task_event(
        self,
        task: Mapping[str, Any],
        *,
        key: str,
        type_: str,
        reason: str,
        message: str,
        instance: str,
        now: datetime,
    ) -> bool:
        """Create a core/v1 Event about ``task`` named after (task, ``key``): posted at most
        once per key, however often it is tried. True when created now, False when it
        exists already (an earlier try got through). ``errors.EventNotPosted`` when the API
        is unreachable or refuses it."""
        body = task_event(
            task, key=key, type_=type_, reason=reason, message=message, instance=instance,
            now=now,
        )  # fmt: skip
        namespace = str(body["metadata"]["namespace"])
        payload: Any = body

        def send() -> bool:
            try:
                self._request(
                    "POST",
                    "/api/v1/namespaces/{namespace}/events",
                    params={"namespace": namespace},
                    body=payload,
                )
            except ApiException as exc:
                if exc.status == 409:
                    return False
                raise errors.EventNotPosted(outage(exc) or f"HTTP {exc.status}") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise errors.EventNotPosted(outage(exc) or type(exc).__name__) from None
            return True

        return await asyncio.to_thread(send)

    async def list_node_tasks(self, *, field_selector: str = "", label_selector: str = "") -> int:
        """One small LIST of the tasks matching the selectors, as kopf's watch of this node's
        tasks makes it: proves the API answers, serves the resource and accepts the
        selector. The number of items seen (at most 1)."""

        def send() -> int:
            page = self._custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, limit=1, _request_timeout=10.0,
                field_selector=field_selector or None, label_selector=label_selector or None,
            )  # fmt: skip
            return len(page.get("items") or []) if isinstance(page, dict) else 0

        return await asyncio.to_thread(send)

    def list_tasks(self) -> list[dict[str, Any]]:
        """Every RktTask in the cluster (blocking; for the admin command)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, limit=500, _continue=token
            )
            if not isinstance(page, dict):
                return items
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items

    def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One RktTask (blocking; for the admin command); None if it is gone."""
        try:
            obj = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if _not_found(exc):
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def drop_finalizer(self, task: Mapping[str, Any], finalizer: str = FINALIZER) -> bool:
        """Remove ``finalizer`` from ``task`` with a JSON patch guarded by a ``test`` of the
        list entry, so a concurrent change makes it fail rather than drop the wrong entry.
        Returns False when the finalizer was not there (or the task is gone)."""
        meta = task.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if finalizer not in finalizers:
            return False
        index = finalizers.index(finalizer)
        ops = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                ops,
                _content_type=JSON_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if _not_found(exc):
                return False
            raise
        return True

    # -- nodes -------------------------------------------------------------------------

    def list_node_names(self) -> set[str]:
        """The names of all Nodes (blocking; for the admin command)."""
        nodes = self._request("GET", "/api/v1/nodes")
        items = nodes.get("items") if isinstance(nodes, Mapping) else None
        names = {((n.get("metadata") or {}).get("name")) for n in items or []}
        return {n for n in names if isinstance(n, str) and n}

    async def label_node(self, node: str, labels: Mapping[str, str | None]) -> bool:
        """Merge-patch labels onto Node ``node`` (None removes a label). False if there is no
        such Node (an agent may run where no Node object exists, e.g. in tests)."""

        def send() -> bool:
            try:
                self._request(
                    "PATCH",
                    "/api/v1/nodes/{name}",
                    params={"name": node},
                    body={"metadata": {"labels": dict(labels)}},
                    content_type=MERGE_PATCH,
                )
            except ApiException as exc:
                if _not_found(exc):
                    return False
                raise
            return True

        return await asyncio.to_thread(send)


def task_event(
    task: Mapping[str, Any],
    *,
    key: str,
    type_: str,
    reason: str,
    message: str,
    instance: str,
    now: datetime,
) -> dict[str, Any]:
    """A core/v1 Event about an RktTask whose name is derived from the task's UID and
    ``key``, so that posting it again finds the first one (409) instead of a second event."""
    meta = task.get("metadata") or {}
    namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
    digest = hashlib.sha256(f"{uid}/{key}".encode()).hexdigest()[:16]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name[:200]}.{digest}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": str(task.get("apiVersion") or f"{GROUP}/{VERSION}"),
            "kind": str(task.get("kind") or api.KIND),
            "name": name,
            "namespace": namespace,
            "uid": uid,
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": REPORTING_COMPONENT, "host": instance},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
