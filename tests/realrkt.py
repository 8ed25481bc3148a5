"""Where the real rkt comes from in a test run, and what it must leave behind: nothing.

``make test`` finds or builds rkt with ``.ci/rkt.sh`` and exports ``RKT_DIR``; ``--rkt-path``
names a binary directly. The real tiers (marker ``rkt``) need that binary and root. In CI
(``CI=true``) they must run: a missing rkt fails them; elsewhere they skip with one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NSPAWN_SHIM_DIR = ROOT / "helm" / "node"  # host setup for hosts without systemd as PID 1


@dataclass(frozen=True)
class RealRkt:
    binary: str | None
    why_not: str  # empty when usable

    @property
    def usable(self) -> bool:
        return self.binary is not None and not self.why_not


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def find(rkt_path: str | None) -> RealRkt:
    """The real rkt of this run: --rkt-path, else $RKT_DIR/rkt (set by make test)."""
    candidate = rkt_path or (
        str(Path(os.environ["RKT_DIR"]) / "rkt") if os.environ.get("RKT_DIR") else None
    )
    if candidate is None:
        return RealRkt(
            None, "no real rkt (make test builds it from ../shared/vendor, or set RKT_PATH)"
        )
    binary = shutil.which(candidate)
    if binary is None:
        return RealRkt(None, f"real rkt {candidate} is not an executable")
    if os.geteuid() != 0:
        return RealRkt(binary, "the real rkt tiers need root")
    for tool in ("systemd-nspawn", "iptables"):
        if shutil.which(tool) is None:
            return RealRkt(
                binary,
                f"rkt's host stage1 needs {tool} (apt-get install systemd-container iptables)",
            )
    return RealRkt(binary, "")


def systemd_is_pid1() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def host_snapshot() -> dict[str, frozenset[str]]:
    """What a pod can leave on the host: network namespaces, veths, NAT rules, mounts."""

    def lines(*argv: str) -> frozenset[str]:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return frozenset(ln.strip() for ln in done.stdout.splitlines() if ln.strip())

    netns = frozenset(ln.split()[0] for ln in lines("ip", "netns", "list"))
    veths = frozenset(
        ln.split(":")[1].strip().split("@")[0]
        for ln in lines("ip", "-o", "link", "show", "type", "veth")
    )
    nat = frozenset(
        ln for ln in lines("iptables", "-w", "-t", "nat", "-S") if not ln.startswith("-P")
    )
    # rkt's mounts live below its pods (<dir>/pods/<state>/<uuid>/...); other mounts on a
    # shared machine are not this tier's.
    mounts = frozenset(
        point
        for point in (ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines())
        if "/pods/" in point
    )
    return {"netns": netns, "veth": veths, "iptables -t nat": nat, "mounts": mounts}


def leftovers(
    before: dict[str, frozenset[str]], after: dict[str, frozenset[str]]
) -> dict[str, list[str]]:
    return {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}


def require_root(what: str, *tools: str) -> None:
    """Tiers outside the real-rkt one that need root (and host tools) fail, never skip: the
    default suite runs as root (README), so a missing privilege is a set-up error."""
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root: run the suite as root (make test)", pytrace=False)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{what} needs {', '.join(missing)} (make system-deps)", pytrace=False)
