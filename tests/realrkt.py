"""Where the real rkt comes from in a test run, and what it must leave behind: nothing.

``make test`` finds or builds rkt with ``.ci/rkt.sh`` and exports ``RKT_DIR``; ``--rkt-path``
names a binary directly. The real tiers (marker ``rkt``) need that binary and root. In CI
(``CI=true``) they must run: a missing rkt fails them; elsewhere they skip with one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


# rkt with rkt-sim's fault file in front: the faults taken for this invocation (fail, hang,
# garbage, crash, slow; see ``rkt_sim.faults``) are applied, then the real rkt runs.
_WITH_FAULTS = """#!{python}
import os
import sys
from pathlib import Path

from rkt_sim import faults

args = sys.argv[1:]
data_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--dir=")), None)
words = [a for a in args if not a.startswith("-")]
command = " ".join(words[:2]) if words[:1] == ["image"] else (words[0] if words else "")
if data_dir:
    code = faults.apply(faults.consume(Path(data_dir), command, args), "rkt")
    if code is not None:
        sys.exit(code)
os.execv({rkt!r}, [{rkt!r}, *args])
"""


def with_faults(path: Path, rkt: str) -> Path:
    """Write at ``path`` an executable that runs the real ``rkt`` behind rkt-sim's fault
    injection (``<dir>/.sim-faults.json``, the same file and actions): real rkt cannot fail,
    hang or crash on request, this puts those faults in front of it. Without a fault file
    it only executes rkt."""
    path.write_text(_WITH_FAULTS.format(python=sys.executable, rkt=rkt))
    path.chmod(0o755)
    return path
