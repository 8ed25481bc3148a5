"""The node fingerprint kept fresh: one round every ``fingerprint_interval_seconds`` that
fingerprints rkt (``fingerprint``), publishes the result as labels on this node's Node
(best effort, only when they changed) and keeps it for kopf's liveness probe and the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from rkt_operator import fingerprint, kubeapi
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class FingerprintState:
    """The latest fingerprint, for the liveness probe and the Node labels."""

    result: fingerprint.Fingerprint | None = None
    taken_at: float = 0.0
    published: dict[str, str | None] = field(default_factory=dict)
    node_missing: bool = False
    task: asyncio.Task[None] | None = None

    def probe(self) -> dict[str, Any]:
        if self.result is None:
            return {"healthy": None, "description": "not fingerprinted yet"}
        return {
            "healthy": self.result.healthy,
            "detected": self.result.detected,
            "description": self.result.description,
            "age_seconds": round(time.monotonic() - self.taken_at, 1),
        }


async def refresh_fingerprint(
    state: FingerprintState, *, settings: Settings, rkt: RktCli, api: kubeapi.KubeApi
) -> None:
    """Fingerprint once; publish the labels on this node's Node when they changed."""
    result = await fingerprint.fingerprint(settings, rkt)
    changed = state.result is None or state.result.healthy != result.healthy
    state.result, state.taken_at = result, time.monotonic()
    if changed:
        level = logging.INFO if result.healthy else logging.WARNING
        log.log(level, "fingerprint healthy=%s: %s", result.healthy, result.description)
    if not settings.publish_fingerprint:
        return
    labels = fingerprint.node_labels(result)
    if labels == state.published:
        return
    try:
        found = await api.label_node(settings.node_name, labels)
    except Exception as exc:  # noqa: BLE001 - publishing is best effort, retried next round
        log.warning("could not label node %s: %s", settings.node_name, exc)
        return
    if not found:
        if not state.node_missing:
            log.warning("node %s not found: fingerprint labels not published", settings.node_name)
        state.node_missing = True
        return
    state.node_missing = False
    state.published = dict(labels)
    log.info("node %s labelled: %s", settings.node_name, labels)


async def loop(
    state: FingerprintState, *, settings: Settings, rkt: RktCli, api: kubeapi.KubeApi
) -> None:
    """Refresh until cancelled; a failed round is logged and the next one runs on time."""
    while True:
        try:
            await refresh_fingerprint(state, settings=settings, rkt=rkt, api=api)
        except Exception:  # the loop must outlive one bad round
            log.exception("fingerprint round failed")
        await asyncio.sleep(settings.fingerprint_interval_seconds)
