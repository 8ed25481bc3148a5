"""The few Kubernetes API calls the agent makes besides kopf's own watching and patching.

Reading one Secret or ConfigMap key for a task's env, merge-patching a task's status, posting
the task events the agent names itself, labelling this agent's Node, and the small LIST its
watch checks make. Values read from Secrets are returned to the caller only: never logged.

The calls go over aiohttp, which kopf already runs on, in the agent's event loop: no thread,
and no ``kubernetes`` client package in the agent's process. That package's ``client``
module imports a generated model class for every API type (18 MiB of the agent's memory,
measured); the agent reads a few fields of the JSON it gets back and needs none of them.
The processes that use the official client (the binder, ``release-orphans``) get it from
``kubeclient``.

Where the agent connects (:class:`Endpoint`): in a pod, client-go's in-cluster way
(``apiaccess``: the service host and port, its CA, the ServiceAccount token re-read when the
kubelet rotates it); elsewhere the kubeconfig kopf logs in with (``KUBECONFIG``), read by
kopf's own reader (``kopfapp.agent_endpoint``), so both clients of the process use the same
credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from rkt_operator import apiaccess, errors
from rkt_operator.model import api
from rkt_operator.settings import InClusterAccess

log = logging.getLogger(__name__)

GROUP = api.GROUP
VERSION = api.VERSION
PLURAL = api.PLURAL
FINALIZER = api.FINALIZER
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0
# At most this many requests of the agent's own are in flight at once (more wait for a
# connection); kopf's watches and patches have their own pool.
MAX_CONNECTIONS = 8
# The events the agent posts itself are reported as kopf's are (kopfapp sets kopf's posting
# component to this).
REPORTING_COMPONENT = "rkt-operator"


class ApiError(Exception):
    """The API server answered outside 2xx: ``status`` (HTTP), ``reason`` (the Status
    object's reason, else the HTTP phrase) and its ``message`` (at most 300 characters)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        head = f"HTTP {status} {reason}"
        super().__init__(f"{head}: {message}" if message else head)
        self.status = status
        self.reason = reason
        self.message = message


class LoginError(Exception):
    """No way to reach the API server is configured (no in-cluster access, no kubeconfig),
    or the configured one cannot be used."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how the agent's own requests go: the server's base URL, the TLS context
    (None for plain http), an ``Authorization`` header value read before each request (None
    for none) and an optional proxy. Built by :func:`in_cluster` or :func:`from_kopf`."""

    server: str
    tls: ssl.SSLContext | None
    authorization: Callable[[], str | None]
    proxy: str | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"Endpoint(server={self.server!r})"


def in_cluster(access: InClusterAccess) -> Endpoint:
    """client-go's in-cluster access: the projected CA, the projected token re-read (by
    ``stat``) before each request, so a rotated token is used at once."""
    token = apiaccess.TokenFile(access.token_file)
    try:
        tls = ssl.create_default_context(cafile=str(access.ca_file))
    except OSError as exc:
        raise LoginError(f"cannot read the CA bundle {access.ca_file}: {exc.strerror}") from None

    def bearer() -> str:
        return f"Bearer {token.read()}"

    return Endpoint(server=access.server, tls=tls, authorization=bearer)


def _pem(data: str | bytes) -> bytes:
    """A kubeconfig ``*-data`` value (base64 of PEM) as PEM bytes."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise LoginError("a certificate or key in the kubeconfig is not valid base64") from None


def _load_client_pair(tls: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """``load_cert_chain`` reads files only: the pair goes through a private temporary
    directory (mode 0700, files 0600) that is gone before this returns."""
    with tempfile.TemporaryDirectory(prefix="rkt-operator-tls-") as tmp:
        paths = []
        for name, content in (("cert.pem", cert), ("key.pem", key)):
            path = Path(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            paths.append(str(path))
        tls.load_cert_chain(paths[0], paths[1])


class Login(Protocol):
    """What a kubeconfig login found (the fields of ``kopf.ConnectionInfo`` used here)."""

    @property
    def server(self) -> str: ...
    @property
    def ca_path(self) -> str | bytes | os.PathLike[str] | os.PathLike[bytes] | None: ...
    @property
    def ca_data(self) -> str | bytes | None: ...
    @property
    def insecure(self) -> bool | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def scheme(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...
    @property
    def certificate_path(self) -> str | bytes | os.PathLike[str] | os.PathLike[bytes] | None: ...
    @property
    def certificate_data(self) -> str | bytes | None: ...
    @property
    def private_key_path(self) -> str | bytes | os.PathLike[str] | os.PathLike[bytes] | None: ...
    @property
    def private_key_data(self) -> str | bytes | None: ...
    @property
    def proxy_url(self) -> str | None: ...


def from_login(info: Login) -> Endpoint:
    """The endpoint of a login (what ``kopf.login_with_kubeconfig`` read from a kubeconfig): CA
    path or data, client certificate and key (paths or data), bearer token or basic auth,
    ``insecure-skip-tls-verify`` and the proxy."""
    tls: ssl.SSLContext | None = None
    if info.server.startswith("https:"):
        try:
            if info.ca_data:
                tls = ssl.create_default_context(cadata=_pem(info.ca_data).decode("ascii"))
            elif info.ca_path:
                tls = ssl.create_default_context(cafile=os.fsdecode(info.ca_path))
            else:
                tls = ssl.create_default_context()
            if info.insecure:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
            if info.certificate_path and info.private_key_path:
                tls.load_cert_chain(
                    os.fsdecode(info.certificate_path), os.fsdecode(info.private_key_path)
                )
            elif info.certificate_data and info.private_key_data:
                _load_client_pair(tls, _pem(info.certificate_data), _pem(info.private_key_data))
        except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
            raise LoginError(f"the kubeconfig's TLS settings cannot be used: {exc}") from None
    header: str | None = None
    if info.token:
        header = f"{info.scheme or 'Bearer'} {info.token}"
    elif info.username and info.password:
        pair = f"{info.username}:{info.password}".encode()
        header = f"Basic {base64.b64encode(pair).decode('ascii')}"
    return Endpoint(
        server=info.server.rstrip("/"), tls=tls, authorization=lambda: header,
        proxy=info.proxy_url or None,
    )  # fmt: skip


def outage(exc: BaseException) -> str | None:
    """A short description when ``exc`` means the API server is unreachable or failing
    (connection refused or reset, timeout, 5xx, 429): a retry later can succeed, and a
    traceback says nothing more. None for anything else (a bug, a 4xx)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ApiError):
            status = current.status
            if status == 429 or status >= 500:
                return f"HTTP {status} {current.reason}".strip()
            return None
        if isinstance(current, aiohttp.ClientError | ConnectionError | TimeoutError):
            first = (str(current).strip().splitlines() or [""])[0]
            return f"{type(current).__name__}: {first[:160]}".rstrip(": ")
        current = current.__cause__ or current.__context__
    return None


def _decode(encoded: bytes | str) -> str | None:
    """A base64 data value as text (None when it is not valid base64)."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", errors="replace")


async def _refusal(response: aiohttp.ClientResponse) -> ApiError:
    """The error of an answer outside 2xx, from its Status object when it sends one (read
    as untrusted: only string fields, cut short)."""
    reason, message = response.reason or "", ""
    try:
        status = json.loads(await response.read())
    except (ValueError, aiohttp.ClientError):
        status = None
    if isinstance(status, Mapping):
        if isinstance(status.get("reason"), str) and status["reason"]:
            reason = status["reason"][:80]
        if isinstance(status.get("message"), str):
            message = status["message"][:300]
    return ApiError(response.status, reason, message)


class KubeApi:
    """The agent's own API calls, one instance per process, over one aiohttp session
    (opened on first use in the running loop; :meth:`close` closes it)."""

    def __init__(self, endpoint: Endpoint, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self._endpoint = endpoint
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            tls: ssl.SSLContext | bool = self._endpoint.tls or False
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=tls)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        seconds: float = REQUEST_TIMEOUT,
    ) -> Any:
        """One request: ``path`` with ``{name}`` placeholders filled (escaped) from
        ``params``; the decoded JSON answer. Raises :class:`ApiError` for an answer outside
        2xx, aiohttp's errors or ``TimeoutError`` when there is no answer."""
        url = self._endpoint.server + path.format_map(
            {key: quote(value, safe="") for key, value in (params or {}).items()}
        )
        headers = {"Accept": "application/json"}
        authorization = self._endpoint.authorization()
        if authorization:
            headers["Authorization"] = authorization
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        async with self._open().request(
            method, url, params=dict(query or {}), data=data, headers=headers,
            proxy=self._endpoint.proxy, timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:  # fmt: skip
            if not 200 <= response.status <= 299:
                raise await _refusal(response)
            raw = await response.read()
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
        """GET one core object (``kind``: ``secrets``, ``configmaps``); None when it does
        not exist."""
        try:
            obj = await self._request(
                "GET",
                f"/api/v1/namespaces/{{namespace}}/{kind}/{{name}}",
                params={"namespace": namespace, "name": name},
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj if isinstance(obj, Mapping) else None

    # -- tasks -------------------------------------------------------------------------

    async def patch_task_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """Merge-patch ``.status`` of a task; returns the updated object (None if the task is
        gone, which is fine: it was deleted meanwhile)."""
        try:
            obj = await self._request(
                "PATCH",
                f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}/status",
                params={"namespace": namespace, "name": name},
                body={"status": dict(patch)},
                content_type=MERGE_PATCH,
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

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
        try:
            await self._request(
                "POST",
                "/api/v1/namespaces/{namespace}/events",
                params={"namespace": str(body["metadata"]["namespace"])},
                body=body,
            )
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise errors.EventNotPosted(outage(exc) or f"HTTP {exc.status}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise errors.EventNotPosted(outage(exc) or type(exc).__name__) from None
        return True

    async def list_node_tasks(self, *, field_selector: str = "", label_selector: str = "") -> int:
        """One small LIST of the tasks matching the selectors, as kopf's watch of this node's
        tasks makes it: proves the API answers, serves the resource and accepts the
        selector. The number of items seen (at most 1)."""
        query = {"limit": "1"}
        if field_selector:
            query["fieldSelector"] = field_selector
        if label_selector:
            query["labelSelector"] = label_selector
        page = await self._request(
            "GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}", query=query, seconds=10.0
        )
        items = page.get("items") if isinstance(page, Mapping) else None
        return len(items) if isinstance(items, list) else 0

    # -- nodes -------------------------------------------------------------------------

    async def label_node(self, node: str, labels: Mapping[str, str | None]) -> bool:
        """Merge-patch labels onto Node ``node`` (None removes a label). False if there is no
        such Node (an agent may run where no Node object exists, e.g. in tests)."""
        try:
            await self._request(
                "PATCH",
                "/api/v1/nodes/{name}",
                params={"name": node},
                body={"metadata": {"labels": dict(labels)}},
                content_type=MERGE_PATCH,
            )
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True


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
