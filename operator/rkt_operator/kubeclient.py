"""The official ``kubernetes`` client, for the processes that are not the node agent: the
binder (``rkt-operator schedule``) and ``rkt-operator release-orphans``.

Both run with whatever kubeconfig a cluster operator has (exec plugins, OIDC, ...), which
the official client reads in full. The node agent does not load this module: its own calls
go through ``kubeapi`` (see there why).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rkt_operator import apiaccess
from rkt_operator.model import api
from rkt_operator.settings import InClusterAccess

JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT = 30.0


def client_configuration(access: InClusterAccess) -> client.Configuration:
    """A ``kubernetes`` client configuration for client-go's in-cluster access that reads
    the ServiceAccount token before every request (a ``stat`` unless it changed)."""
    token = apiaccess.TokenFile(access.token_file)
    configuration = client.Configuration()
    configuration.host = access.server
    configuration.ssl_ca_cert = str(access.ca_file)
    configuration.api_key_prefix["BearerToken"] = "Bearer"
    configuration.api_key["BearerToken"] = token.read()

    def refresh(conf: client.Configuration) -> None:
        conf.api_key["BearerToken"] = token.read()

    configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
    return configuration


def connect(
    kubeconfig: str | None = None, *, access: InClusterAccess | None = None
) -> client.ApiClient:
    """An API client: with ``access`` (in a pod), client-go's in-cluster way (service host and
    port variables, the ServiceAccount token re-read on rotation, its CA; see ``apiaccess``);
    else the kubeconfig (``kubeconfig`` or the client's usual ``KUBECONFIG`` /
    ``~/.kube/config`` lookup)."""
    if access is not None and kubeconfig is None:
        return client.ApiClient(client_configuration(access))
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=configuration
    )
    return client.ApiClient(configuration)


class AdminApi:
    """What ``release-orphans`` reads and writes (blocking calls)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    def list_tasks(self) -> list[dict[str, Any]]:
        """Every RktTask in the cluster."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._custom.list_cluster_custom_object(
                api.GROUP, api.VERSION, api.PLURAL, limit=500, _continue=token
            )
            if not isinstance(page, dict):
                return items
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items

    def get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One RktTask; None if it is gone."""
        try:
            obj = self._custom.get_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def drop_finalizer(self, task: Mapping[str, Any], finalizer: str = api.FINALIZER) -> bool:
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
                api.GROUP,
                api.VERSION,
                meta["namespace"],
                api.PLURAL,
                meta["name"],
                ops,
                _content_type=JSON_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_node_names(self) -> set[str]:
        """The names of all Nodes."""
        nodes: Any = self._core.list_node(_preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        answer: Any = json.loads(nodes.data or b"{}")
        items = answer.get("items") if isinstance(answer, Mapping) else None
        names = {((n.get("metadata") or {}).get("name")) for n in items or []}
        return {n for n in names if isinstance(n, str) and n}
