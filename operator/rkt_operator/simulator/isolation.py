"""Linux primitives for the app's isolation: namespaces, mounts, chroot, credentials.

Python 3.11 has no ``os.unshare``/``os.setns``, so this module calls libc through ctypes.
:func:`prepare_child` runs in the forked child between ``fork`` and ``exec`` (subprocess's
``preexec_fn``): when the simulator runs as root it gives the app a private mount and UTS
namespace, mounts the overlay root (or uses the copied tree), bind-mounts ``/dev``, ``/proc``
and the pod's volumes at their targets, chroots and drops to the app's user and group.
Without root (the documented approximation) it only changes into the app's rootfs.
"""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def enc(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    result = _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(result, f"mount {target}")


def umount(target: str) -> None:
    _libc.umount2(target.encode(), ctypes.c_int(MNT_DETACH))


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def set_pdeathsig(sig: int) -> None:
    _libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), 0, 0, 0)


@dataclass(frozen=True)
class Bind:
    source: str
    target: str  # absolute path inside the app's rootfs
    read_only: bool = False


@dataclass
class ChildPlan:
    """Everything the child does before exec; computed by the parent."""

    rootfs: str
    isolate: bool
    overlay: tuple[str, str, str] | None = None  # lower, upper, work
    binds: list[Bind] = field(default_factory=list)
    hostname: str | None = None
    read_only_rootfs: bool = False
    workdir: str = "/"
    uid: int | None = None
    gid: int | None = None
    groups: list[int] = field(default_factory=list)
    error_fd: int = -1
    enter_root_fd: int = -1  # enter: join the namespaces of this pid instead
    enter_pid: int = 0


def _inside(rootfs: str, target: str) -> str:
    return os.path.join(rootfs, target.lstrip("/"))


def _make_target(path: str, like: str) -> None:
    if os.path.lexists(path):
        return
    if os.path.isdir(like):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):
            pass


def _isolate(plan: ChildPlan) -> None:
    unshare(CLONE_NEWNS | CLONE_NEWUTS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = plan.rootfs
    if plan.overlay is not None:
        lower, upper, work = plan.overlay
        mount("overlay", root, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
    for special in ("/dev", "/proc"):
        target = _inside(root, special)
        os.makedirs(target, exist_ok=True)
        mount(special, target, None, MS_BIND | MS_REC)
    for bind in plan.binds:
        _make_target(_inside(root, bind.target), bind.source)
    if plan.read_only_rootfs:
        mount(root, root, None, MS_BIND | MS_REC)
        mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    for bind in plan.binds:
        target = _inside(root, bind.target)
        mount(bind.source, target, None, MS_BIND | MS_REC)
        if bind.read_only:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    if plan.hostname:
        sethostname(plan.hostname)
    os.chroot(root)
    os.chdir(plan.workdir)


def _join(plan: ChildPlan) -> None:
    """``enter``: the namespaces and root of a running app."""
    for ns, flag in (("mnt", CLONE_NEWNS), ("uts", CLONE_NEWUTS)):
        fd = os.open(f"/proc/{plan.enter_pid}/ns/{ns}", os.O_RDONLY)
        try:
            setns(fd, flag)
        finally:
            os.close(fd)
    os.fchdir(plan.enter_root_fd)
    os.chroot(".")
    os.chdir(plan.workdir)


def prepare_child(plan: ChildPlan) -> None:
    """The ``preexec_fn``: report any failure on ``plan.error_fd`` before re-raising it."""
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if plan.enter_pid:
            _join(plan)
        else:
            set_pdeathsig(signal.SIGKILL)
            if plan.isolate:
                _isolate(plan)
            else:
                os.chdir(_inside(plan.rootfs, plan.workdir))
        if plan.gid is not None:
            os.setgroups(plan.groups)
            os.setgid(plan.gid)
        if plan.uid is not None:
            os.setuid(plan.uid)
    except BaseException as exc:
        if plan.error_fd >= 0:
            os.write(plan.error_fd, str(exc).encode()[:4000])
        raise


def make_symlink_binds(rootfs: Path, binds: list[Bind]) -> None:
    """The unprivileged approximation of bind mounts: symlinks at the targets."""
    for bind in binds:
        target = Path(_inside(str(rootfs), bind.target))
        if target.is_symlink() or target.exists():
            if target.is_symlink() or (target.is_dir() and not any(target.iterdir())):
                if target.is_symlink():
                    target.unlink()
                else:
                    target.rmdir()
            else:
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(bind.source)
