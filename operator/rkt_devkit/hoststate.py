"""Host changes a real kubelet and containerd make, recorded before they start and undone after.

A kubelet is host software: it writes kernel settings (``vm.overcommit_memory``,
``kernel.panic``, ``kernel.panic_on_oops``), adds iptables chains (``KUBE-FIREWALL``,
``KUBE-KUBELET-CANARY``, ...), creates ``/var/log/containers``, cgroups named ``kubepods``, and
containerd's shims keep sockets under ``/run/containerd``; the node harness also makes the root
mount shared for ``Bidirectional`` volume mounts. :class:`HostState` records each of these
before the node starts and puts back what it found: it removes only what did not exist before,
so it never touches what other users of the machine made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
# Paths the kubelet or containerd create outside the harness's own run directory.
HOST_PATHS = (Path("/var/log/containers"), Path("/var/log/pods"), Path("/run/containerd"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def root_propagation(mountinfo: str | None = None) -> str:
    """``shared`` or ``private`` (or ``slave``): the propagation of the mount at ``/``."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[4] == "/":
            optional = fields[6 : fields.index("-")]
            if any(o.startswith("shared:") for o in optional):
                return "shared"
            if any(o.startswith("master:") for o in optional):
                return "slave"
            return "private"
    return "private"


def mounts_under(prefixes: list[Path], mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below any of ``prefixes``, deepest first (the order to unmount)."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    found: set[Path] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = Path(fields[4].replace("\\040", " "))
        if any(point == p or p in point.parents for p in prefixes):
            found.add(point)
    return sorted(found, key=lambda p: (len(p.parts), str(p)), reverse=True)


def unmount_all(prefixes: list[Path]) -> list[Path]:
    """Unmount (lazily) everything mounted at or below ``prefixes``; what was unmounted."""
    done: list[Path] = []
    for point in mounts_under(prefixes):
        result = _run(["umount", "-l", str(point)])
        if result.returncode == 0:
            done.append(point)
        else:
            log.warning("umount %s: %s", point, result.stderr.strip())
    return done


def iptables_chains(binary: str, table: str) -> set[str]:
    """User-defined chains of one table ('' output when the binary is missing)."""
    try:
        result = _run([binary, "-w", "-t", table, "-S"])
    except FileNotFoundError:
        return set()
    return {line.split()[1] for line in result.stdout.splitlines() if line.startswith("-N ")}


def remove_iptables_chains(binary: str, table: str, chains: set[str]) -> None:
    """Delete the rules that jump to ``chains``, then flush and delete the chains."""
    if not chains:
        return
    rules = _run([binary, "-w", "-t", table, "-S"]).stdout.splitlines()
    for rule in rules:
        words = rule.split()
        if words[:1] == ["-A"] and "-j" in words and words[words.index("-j") + 1] in chains:
            _run([binary, "-w", "-t", table, "-D", *words[1:]])
    for chain in chains:
        _run([binary, "-w", "-t", table, "-F", chain])
    for chain in chains:
        result = _run([binary, "-w", "-t", table, "-X", chain])
        if result.returncode != 0:
            log.warning("%s -t %s -X %s: %s", binary, table, chain, result.stderr.strip())


def remove_cgroup_tree(top: Path, *, kill: bool = False) -> None:
    """rmdir a cgroup tree bottom-up (a cgroup directory holds only kernel files); with
    ``kill``, SIGKILL the processes still in it first (only for a tree the caller owns)."""
    if kill:
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.5)
    for dirpath, dirnames, _ in os.walk(top, topdown=False):
        for name in dirnames:
            try:
                (Path(dirpath) / name).rmdir()
            except OSError as exc:
                log.warning("cgroup %s/%s stays: %s", dirpath, name, exc)
    try:
        top.rmdir()
    except OSError as exc:
        log.warning("cgroup %s stays: %s", top, exc)


@dataclass
class HostState:
    """What the host looked like before the node started; :meth:`restore` puts it back."""

    sysctls: dict[str, str] = field(default_factory=dict)
    chains: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    existing_paths: set[Path] = field(default_factory=set)
    existing_cgroups: set[Path] = field(default_factory=set)
    propagation: str = "private"

    @classmethod
    def record(cls) -> HostState:
        state = cls()
        for key in SYSCTLS:
            state.sysctls[key] = (Path("/proc/sys") / key).read_text().strip()
        for binary in IPTABLES:
            for table in TABLES:
                state.chains[(binary, table)] = iptables_chains(binary, table)
        state.existing_paths = {p for p in HOST_PATHS if p.exists()}
        state.existing_cgroups = set(CGROUP_ROOT.glob(f"*/{KUBEPODS}"))
        state.propagation = root_propagation()
        return state

    def make_root_shared(self) -> None:
        """``mount --make-shared /`` (Bidirectional mounts need it); undone by restore()."""
        if self.propagation != "shared":
            subprocess.run(["mount", "--make-shared", "/"], check=True, timeout=30)

    def restore(self) -> list[str]:
        """Undo every change found; a line per change undone (for the harness's log)."""
        undone: list[str] = []
        for key, value in self.sysctls.items():
            path = Path("/proc/sys") / key
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
                undone.append(f"sysctl {key.replace('/', '.')}={value}")
        for (binary, table), before in self.chains.items():
            new = {c for c in iptables_chains(binary, table) - before if c.startswith("KUBE-")}
            remove_iptables_chains(binary, table, new)
            undone += [f"{binary} -t {table} -X {c}" for c in sorted(new)]
        for path in HOST_PATHS:
            if path.exists() and path not in self.existing_paths:
                unmount_all([path])
                shutil.rmtree(path, ignore_errors=True)
                undone.append(f"rm -r {path}")
        for cgroup in sorted(set(CGROUP_ROOT.glob(f"*/{KUBEPODS}")) - self.existing_cgroups):
            remove_cgroup_tree(cgroup)
            undone.append(f"rmdir {cgroup}")
        if self.propagation != "shared" and root_propagation() == "shared":
            flag = "--make-slave" if self.propagation == "slave" else "--make-private"
            subprocess.run(["mount", flag, "/"], check=False, timeout=30)
            undone.append(f"mount {flag} /")
        return undone
