"""Node fingerprint: can this node run rkt tasks, and with which rkt?

Small independent probes (root, rkt and appc versions, volumes setting), each returning a
``Probe``; ``combine`` turns them into one ``Fingerprint`` value, and ``node_labels`` renders
it as ``rktoperator.io/`` Node labels. Only ``fingerprint()`` does I/O (``rkt version``
through ``RktCli``) and it never raises for a broken rkt: a node without a usable rkt is
reported (``healthy=False`` with Nomad's message), not crashed on. Publishing the labels and
repeating the fingerprint are the caller's business.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from packaging.version import Version

from rkt_operator import errors
from rkt_operator.model import api
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.pods import RktVersion
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)

MIN_RKT_VERSION = Version("1.27.0")
VERSION_DEADLINE_SECONDS = 30.0

# Nomad's attribute names (kept for parity in logs and `fingerprint` output).
ATTR_RKT = "driver.rkt"
ATTR_RKT_VERSION = "driver.rkt.version"
ATTR_APPC_VERSION = "driver.rkt.appc.version"
ATTR_VOLUMES = "driver.rkt.volumes.enabled"

LABEL_RKT = api.LABEL_RKT
LABEL_RKT_VERSION = api.LABEL_RKT_VERSION
LABEL_APPC_VERSION = api.LABEL_APPC_VERSION
LABEL_VOLUMES = api.LABEL_VOLUMES
LABELS = (LABEL_RKT, LABEL_RKT_VERSION, LABEL_APPC_VERSION, LABEL_VOLUMES)

_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Probe:
    """One facet. ``ok=False`` with ``detected=False`` means rkt is not usable at all here;
    with ``detected=True`` it was found but must not be used (too old)."""

    ok: bool
    message: str = ""
    detected: bool = True
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fingerprint:
    detected: bool
    healthy: bool
    description: str
    attributes: dict[str, str]


def probe_root(euid: int) -> Probe:
    """rkt's prepare/run-prepared/rm/gc/enter refuse non-root users."""
    if euid != 0:
        return Probe(ok=False, detected=False, message="must run as root user, disabling")
    return Probe(ok=True)


def probe_version(version: RktVersion) -> Probe:
    """rkt >= 1.27.0 (Nomad's minimum: prepare + run-prepared and status JSON apps)."""
    attributes = {ATTR_RKT_VERSION: str(version.rkt), ATTR_APPC_VERSION: str(version.appc)}
    if version.rkt < MIN_RKT_VERSION:
        message = f"unsupported rkt version {version.rkt}; please upgrade to >= {MIN_RKT_VERSION}"
        return Probe(ok=False, detected=True, message=message, attributes=attributes)
    return Probe(ok=True, attributes=attributes)


def probe_version_error(exc: errors.RktError) -> Probe:
    """``rkt version`` could not be run or read."""
    if isinstance(exc, errors.RktOutputError):
        return Probe(ok=False, detected=False, message=exc.message)
    return Probe(ok=False, detected=False, message=f"Failed to execute rkt version: {exc}")


def probe_volumes(settings: Settings) -> Probe:
    """Advertised only when host volumes are allowed (Nomad ``rkt.volumes.enabled``)."""
    return Probe(ok=True, attributes={ATTR_VOLUMES: "1"} if settings.volumes_enabled else {})


def combine(probes: Sequence[Probe]) -> Fingerprint:
    """All probes ok -> detected and healthy; otherwise the first failure's message."""
    attributes: dict[str, str] = {}
    for probe in probes:
        attributes.update(probe.attributes)
    failures = [p for p in probes if not p.ok]
    if failures:
        detected = all(p.detected for p in failures)
        # Versions stay visible when rkt was found but refused; the rest needs a usable rkt.
        kept = {k: v for k, v in attributes.items() if k in (ATTR_RKT_VERSION, ATTR_APPC_VERSION)}
        return Fingerprint(
            detected=detected,
            healthy=False,
            description=failures[0].message,
            attributes=kept if detected else {},
        )
    attributes[ATTR_RKT] = "1"
    description = (
        f"rkt {attributes.get(ATTR_RKT_VERSION, '?')} "
        f"(appc {attributes.get(ATTR_APPC_VERSION, '?')}) is usable"
    )
    return Fingerprint(detected=True, healthy=True, description=description, attributes=attributes)


async def fingerprint(settings: Settings, rkt: RktCli, *, euid: int | None = None) -> Fingerprint:
    """Probe this node. Never raises for a missing or broken rkt."""
    root = probe_root(os.geteuid() if euid is None else euid)
    if not root.ok:
        return combine([root])
    try:
        version = probe_version(await rkt.version(deadline=VERSION_DEADLINE_SECONDS))
    except errors.RktError as exc:
        version = probe_version_error(exc)
    result = combine([root, version, probe_volumes(settings)])
    log.debug(
        "fingerprint detected=%s healthy=%s description=%r",
        result.detected,
        result.healthy,
        result.description,
    )
    return result


def _label_value(value: str | None) -> str | None:
    if value is None or len(value) > 63 or not _LABEL_VALUE_RE.match(value):
        return None
    return value


def node_labels(fp: Fingerprint) -> dict[str, str | None]:
    """The ``rktoperator.io/`` Node labels for a fingerprint; ``None`` means "remove".

    ``rktoperator.io/rkt`` is ``"true"`` only on a healthy node (schedule with it) and
    ``"false"`` otherwise, so an unusable rkt is visible rather than silently absent.
    """
    attrs = fp.attributes
    return {
        LABEL_RKT: "true" if fp.healthy else "false",
        LABEL_RKT_VERSION: _label_value(attrs.get(ATTR_RKT_VERSION)),
        LABEL_APPC_VERSION: _label_value(attrs.get(ATTR_APPC_VERSION)),
        LABEL_VOLUMES: "true" if fp.healthy and ATTR_VOLUMES in attrs else None,
    }
