"""API server access for every client of the agent, the way client-go's in-cluster config
does it: no DNS, the projected ServiceAccount token re-read when the kubelet rotates it.

In a pod (``settings.in_cluster_access()`` found ``KUBERNETES_SERVICE_HOST`` / ``_PORT``),
the server is ``https://<host>:<port>`` (IPv6 in brackets), the CA bundle is the projected
``ca.crt`` and the bearer token is the projected ``token`` file. The kubelet rotates that file
(an atomic symlink swap); :class:`TokenFile` notices the change by ``stat`` and reads the new
token before the next request. Outside a pod a kubeconfig is used instead.

Three consumers: the agent's own requests (``kubeapi.in_cluster``: the token is read before
every request), the ``kubernetes`` client of the binder (``kubeclient.client_configuration``,
the same) and kopf (:func:`kopf_credentials` feeds the login handler in
``kopfapp``; kopf keeps credentials until they expire or a request gets 401, so they expire
after :data:`KOPF_REFRESH_SECONDS`, client-go's token refresh period, and a 401 re-reads the
file at once). The token never appears in logs or errors.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rkt_operator.settings import InClusterAccess

# client-go re-reads a projected token at most once a minute; kopf re-logs in as often.
KOPF_REFRESH_SECONDS = 60.0


class TokenUnavailable(Exception):
    """The ServiceAccount token file cannot be read or is empty."""


class TokenFile:
    """A token file read again whenever it changed (inode, mtime or size), thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""

    def read(self) -> str:
        with self._lock:
            try:
                info = os.stat(self.path)  # follows the kubelet's ..data symlink
                stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
                if stamp != self._stamp or not self._token:
                    token = self.path.read_text(encoding="utf-8").strip()
                    if not token:
                        raise TokenUnavailable(f"the token file {self.path} is empty")
                    self._token, self._stamp = token, stamp
            except OSError as exc:
                raise TokenUnavailable(
                    f"cannot read the token file {self.path}: {exc.strerror}"
                ) from None
            return self._token


@dataclass(frozen=True)
class Credentials:
    """What kopf's login handler needs (``kopf.ConnectionInfo`` is built from it there)."""

    server: str
    ca_path: str
    token: str
    default_namespace: str | None
    expiration: datetime


def kopf_credentials(
    access: InClusterAccess, token: TokenFile, *, now: datetime | None = None
) -> Credentials:
    """The in-cluster credentials for kopf, valid for :data:`KOPF_REFRESH_SECONDS`."""
    try:
        namespace = access.namespace_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        namespace = None
    return Credentials(
        server=access.server,
        ca_path=str(access.ca_file),
        token=token.read(),
        default_namespace=namespace,
        expiration=(now or datetime.now(UTC)) + timedelta(seconds=KOPF_REFRESH_SECONDS),
    )
