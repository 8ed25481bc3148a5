"""Leaving the agent's container: enter another process's namespaces, move into a host cgroup.

Used by the detached supervisor (``shim``) before it runs rkt, as ``nsenter --target 1
--mount --uts --ipc --net`` plus a ``cgroup.procs`` write would do, but in-process (the
supervisor must be the process that moves). Standard library only: the supervisor must start
fast, and nothing may be imported after it entered the host's mount namespace, where the
agent's files (its Python, its packages) do not exist.

Cgroups: after entering PID 1's mount namespace, ``/proc/self/mountinfo`` lists the host's
cgroup hierarchies (v1: one per controller set, named ones such as ``name=systemd`` too; v2:
the unified tree; a hybrid host has both). The process joins ``<relative>`` under the root
of each: a cgroup v1 cpuset gets its parent's CPUs and memory nodes first (an empty cpuset
refuses tasks), a cgroup v2 parent gets the controllers it may delegate enabled (best effort).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import importlib.abc
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

_CLONE_FLAGS = {
    "mnt": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "cgroup": 0x02000000,
}
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class EscapeError(OSError):
    """Entering the host's namespaces or cgroup failed (nothing was started)."""


class _NoImports(importlib.abc.MetaPathFinder):
    """Refuses every import not done yet: after entering the host's mount namespace the
    agent's files (its Python packages) are not there, or worse, other files are."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        raise ImportError(f"{fullname} imported after leaving the agent's container")


def forbid_imports() -> None:
    """From now on an import of a module not loaded yet fails loudly (see ``_NoImports``)."""
    sys.meta_path.insert(0, _NoImports())


def _setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def enter_namespaces(pid: int, names: tuple[str, ...], *, proc: Path = Path("/proc")) -> None:
    """Join the ``names`` namespaces of process ``pid`` (single-threaded callers only: the
    kernel refuses a mount namespace change to a process that shares its file system
    information). The working directory is kept by path. After a mount namespace change no
    new module may be imported (``forbid_imports``)."""
    cwd = os.getcwd()
    fds: list[tuple[str, int]] = []
    try:
        for name in names:
            if name not in _CLONE_FLAGS:
                raise EscapeError(errno.EINVAL, f"unknown namespace {name!r}")
            fds.append((name, os.open(proc / str(pid) / "ns" / name, os.O_RDONLY | os.O_CLOEXEC)))
        for name, fd in fds:
            if os.fstat(fd).st_ino == os.stat(proc / "self" / "ns" / name).st_ino:
                continue  # already there (e.g. the agent uses the host network)
            try:
                _setns(fd, _CLONE_FLAGS[name])
                if name == "mnt":
                    forbid_imports()
            except OSError as exc:
                raise EscapeError(
                    exc.errno or errno.EPERM, f"cannot enter the {name} namespace of pid {pid}"
                ) from exc
    except EscapeError:
        raise
    except OSError as exc:
        raise EscapeError(exc.errno or errno.EPERM, f"namespaces of pid {pid}: {exc}") from exc
    finally:
        for _, fd in fds:
            os.close(fd)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: its root directory and whether it is cgroup v2."""

    root: Path
    unified: bool
    options: frozenset[str]


def hierarchies(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Hierarchy]:
    """The cgroup hierarchies mounted at their root in this mount namespace, one each."""
    found: dict[frozenset[str], Hierarchy] = {}
    for line in mountinfo.read_text().splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        fstype, super_options = tail[0], tail[2]
        if fstype not in ("cgroup", "cgroup2") or fields[3] != "/":
            continue
        options = (
            frozenset(opt for opt in super_options.split(",") if opt not in ("rw", "ro"))
            if fstype == "cgroup"
            else frozenset({"cgroup2"})
        )
        if fstype == "cgroup" and not options - {"xattr", "noprefix", "clone_children"}:
            continue
        mount_point = Path(fields[4].replace("\\040", " "))
        found.setdefault(options, Hierarchy(mount_point, fstype == "cgroup2", options))
    return list(found.values())


def _copy_cpuset(directory: Path) -> None:
    """A new v1 cpuset cgroup takes its parent's CPUs and memory nodes (else it is empty)."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = directory / name
        if own.exists() and not own.read_text().strip():
            own.write_text((directory.parent / name).read_text().strip() or "\n")


def _enable_v2_controllers(directory: Path) -> None:
    """Delegate what the cgroup may delegate to its children (best effort)."""
    try:
        available = (directory / "cgroup.controllers").read_text().split()
        if available:
            (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in available))
    except OSError:
        pass


def join_cgroup(
    relative: str, pid: int = 0, *, mountinfo: Path | None = None
) -> list[tuple[Path, Path]]:
    """Move ``pid`` (0: this process) into ``relative`` under every hierarchy's root,
    creating the directories; returns (hierarchy root, cgroup) pairs. ``EscapeError`` names
    the hierarchy that refused."""
    joined: list[tuple[Path, Path]] = []
    found = hierarchies(mountinfo) if mountinfo else hierarchies()
    if not found:
        raise EscapeError(errno.ENOENT, "no cgroup hierarchy is mounted")
    for hierarchy in found:
        target = hierarchy.root / relative
        try:
            current = hierarchy.root
            for part in Path(relative).parts:
                if hierarchy.unified:
                    _enable_v2_controllers(current)
                current = current / part
                current.mkdir(exist_ok=True)
                if "cpuset" in hierarchy.options:
                    _copy_cpuset(current)
            (target / "cgroup.procs").write_text(f"{pid or os.getpid()}\n")
        except OSError as exc:
            raise EscapeError(
                exc.errno or errno.EPERM, f"cannot join cgroup {target}: {exc.strerror or exc}"
            ) from exc
        joined.append((hierarchy.root, target))
    return joined


def remove_tree(directory: Path) -> bool:
    """Remove a cgroup and the cgroups below it (the pod's stage1 makes some), deepest first;
    a cgroup something still lives in stays. True when ``directory`` is gone."""
    for below, _, _ in os.walk(directory, topdown=False):
        try:
            os.rmdir(below)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return not directory.exists()


def leave_cgroup(joined: list[tuple[Path, Path]], *, patience: float = 10.0) -> None:
    """Move this process back to each hierarchy's root and remove the cgroups it joined (with
    what the pod made below them). The pod's last processes may still be exiting when rkt
    has: retry for up to ``patience`` seconds, then leave what is still busy."""
    pending: list[Path] = []
    for root, directory in joined:
        try:
            (root / "cgroup.procs").write_text(f"{os.getpid()}\n")
        except OSError:
            continue
        pending.append(directory)
    deadline = time.monotonic() + patience
    while pending:
        pending = [d for d in pending if not remove_tree(d)]
        if not pending or time.monotonic() >= deadline:
            return
        time.sleep(0.1)
