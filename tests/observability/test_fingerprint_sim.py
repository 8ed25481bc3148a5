"""``fingerprint()`` through the real adapter against rkt-sim (healthy, and an old rkt)."""

from __future__ import annotations

import json

from rkt_operator import fingerprint
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings


async def test_healthy_node(settings: Settings, rkt: RktCli) -> None:
    fp = await fingerprint.fingerprint(settings, rkt)
    assert fp.detected
    assert fp.healthy
    assert fp.attributes["driver.rkt"] == "1"
    assert fingerprint.node_labels(fp) == {
        "rktoperator.io/rkt": "true",
        "rktoperator.io/rkt.version": "1.30.0",
        "rktoperator.io/appc.version": "0.8.11",
        "rktoperator.io/volumes.enabled": "true",
    }


async def test_old_rkt_is_reported_unhealthy(settings: Settings, rkt: RktCli) -> None:
    config = settings.rkt_dir / ".sim-config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "rkt_version": "1.26.0"}))
    fp = await fingerprint.fingerprint(settings, rkt)
    assert fp.detected
    assert not fp.healthy
    assert fp.description == "unsupported rkt version 1.26.0; please upgrade to >= 1.27.0"
    labels = fingerprint.node_labels(fp)
    assert labels["rktoperator.io/rkt"] == "false"
    assert labels["rktoperator.io/rkt.version"] == "1.26.0"
