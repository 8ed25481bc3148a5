"""Leader election over a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does
it, so that of several binder replicas exactly one binds at a time.

- Every replica reads the Lease each ``retry_period``. The holder renews ``renewTime``; a
  write is a PUT carrying the resourceVersion that was read, so of two replicas racing for
  the same Lease only one succeeds (the other gets 409 Conflict).
- A follower takes the Lease over when the record (holder, renewTime) has not changed for
  ``lease_duration`` on *its own* monotonic clock (no comparison of clocks across machines),
  or when the holder released it (empty holder).
- The leader considers itself leading only until ``renew_deadline`` after its last successful
  renewal (shorter than ``lease_duration``): a leader cut off from the API server stops
  binding before anyone else may start.
- On shutdown the leader releases the Lease (empty holder) so a standby takes over at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0


def _micro_time(moment: datetime) -> str:
    """metav1.MicroTime text (RFC 3339 with exactly six fractional digits)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Runs in its own thread; ``leading()`` says whether this replica may act now."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        on_change: Callable[[bool], None] = lambda leading: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_change = on_change
        self._clock = clock
        self._renewed_at: float | None = None  # monotonic time of our last successful write
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._was_leading = False

    # -- state ---------------------------------------------------------------------------

    def leading(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.renew_deadline

    def _notify(self) -> None:
        now = self.leading()
        if now != self._was_leading:
            self._was_leading = now
            log.info(
                "leader election lease=%s/%s identity=%s leading=%s",
                self.namespace,
                self.name,
                self.identity,
                now,
            )
            self._on_change(now)

    # -- one round -----------------------------------------------------------------------

    def _body(self, *, resource_version: str | None, transitions: int, acquired: str) -> Any:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": acquired,
                "renewTime": _micro_time(datetime.now(UTC)),
                "leaseTransitions": transitions,
            },
        }

    def try_acquire_or_renew(self) -> bool:
        """One election round; True when this replica holds the Lease afterwards."""
        started = self._clock()
        now_text = _micro_time(datetime.now(UTC))
        try:
            lease: Any = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                self._api.create_namespaced_lease(
                    self.namespace,
                    self._body(resource_version=None, transitions=0, acquired=now_text),
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as conflict:
                if conflict.status == 409:
                    return False  # another replica created it first
                raise
            self._renewed_at = started
            return True
        spec = lease.spec
        holder = spec.holder_identity or ""
        version = lease.metadata.resource_version
        transitions = spec.lease_transitions or 0
        if holder == self.identity:
            acquired = _micro_time(spec.acquire_time) if spec.acquire_time else now_text
            body = self._body(resource_version=version, transitions=transitions, acquired=acquired)
        else:
            self._renewed_at = None  # whatever we believed, someone else holds it now
            record = (holder, str(spec.renew_time))
            if record != self._observed:
                self._observed, self._observed_at = record, started
            expired = started - self._observed_at >= self.lease_duration
            if holder and not expired:
                return False
            body = self._body(
                resource_version=version, transitions=transitions + 1, acquired=now_text
            )
        try:
            self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:
                return False  # somebody else wrote it since we read it
            raise
        self._renewed_at = started
        return True

    def release(self) -> None:
        """Give the Lease up (empty holder) if we hold it, so a standby takes over now."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            lease: Any = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
            if lease.spec.holder_identity != self.identity:
                return
            body = self._body(
                resource_version=lease.metadata.resource_version,
                transitions=lease.spec.lease_transitions or 0,
                acquired=_micro_time(datetime.now(UTC)),
            )
            body["spec"]["holderIdentity"] = ""
            self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
            log.info("lease=%s/%s released by %s", self.namespace, self.name, self.identity)
        except ApiException as exc:
            log.warning("could not release lease=%s/%s: %s", self.namespace, self.name, exc)

    # -- thread --------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as exc:  # noqa: BLE001 - keep electing; leading() expires by itself
                log.warning("lease=%s/%s round failed: %s", self.namespace, self.name, exc)
            self._notify()
            self._stop.wait(self.retry_period)
        self.release()
        self._notify()

    def stop(self) -> None:
        self._stop.set()
