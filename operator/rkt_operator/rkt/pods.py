"""Value types of what rkt reports about pods and itself, and small pure queries on them.

Produced by ``rkt_operator.rkt.parse`` from rkt's output; consumed by the executor and the
fingerprint. No I/O, no clock.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from packaging.version import Version

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

POD_STATES = frozenset(
    {
        "embryo",
        "preparing",
        "aborted prepare",
        "prepared",
        "running",
        "exited",
        "exited garbage",
        "exited deleting",
        "garbage",
        "deleting",
    }
)
# Pod states after which the pod never runs again (rkt's IsFinished plus the never-ran ones).
FINISHED_STATES = frozenset(
    {"exited", "exited garbage", "exited deleting", "aborted prepare", "garbage", "deleting"}
)
APP_STATES = frozenset({"unknown", "created", "running", "exited"})


@dataclass(frozen=True)
class RktVersion:
    """``rkt version``: the rkt and appc versions (build suffix ``+git...`` cut off)."""

    rkt: Version
    appc: Version
    raw: str


@dataclass(frozen=True)
class NetworkInfo:
    """One entry of a pod's ``networks`` (status JSON ``NetInfo``)."""

    name: str
    if_name: str
    ip: str
    mask: str = ""
    args: str = ""


@dataclass(frozen=True)
class AppStatus:
    """One entry of a pod's ``apps`` (status JSON ``App``)."""

    name: str
    state: str
    image_id: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    user_annotations: Mapping[str, str] = field(default_factory=dict)
    user_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodStatus:
    """A pod as ``rkt status --format=json`` / ``rkt list --format=json`` describe it."""

    uuid: str
    state: str
    networks: tuple[NetworkInfo, ...] = ()
    apps: tuple[AppStatus, ...] = ()
    created_at: datetime | None = None
    started_at: datetime | None = None
    user_annotations: Mapping[str, str] = field(default_factory=dict)
    user_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def annotations(self) -> dict[str, str]:
        """Pod-level user annotations overlaid with those of the first app that has any
        (``prepare --user-annotation`` is per app, so that is where our stamp lives)."""
        merged = dict(self.user_annotations)
        for app in self.apps:
            if app.user_annotations:
                merged.update(app.user_annotations)
                break
        return merged


@dataclass(frozen=True)
class PodStatusText:
    """``rkt status`` text format: the only place rkt reports the pod's ``pid``."""

    state: str
    created_at: datetime | None = None
    started_at: datetime | None = None
    networks: tuple[tuple[str, str], ...] = ()  # (network name, ip4)
    pid: int | None = None
    exited: bool | None = None
    app_exit_codes: Mapping[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- networks


def is_global_unicast(ip: str) -> bool:
    """Go's ``net.IP.IsGlobalUnicast``: private ranges count, loopback/link-local/multicast/
    unspecified/broadcast do not. Unparseable addresses do not count either."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified:
        return False
    return not (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"))


def pod_ip(status: PodStatus) -> str | None:
    """The IP of the first network with a global-unicast address (Nomad took ``networks[0]``
    even when that entry was the one rejected; we take the selected one)."""
    for net in status.networks:
        if is_global_unicast(net.ip):
            return net.ip
    return None
