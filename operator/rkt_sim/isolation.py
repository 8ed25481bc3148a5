"""Linux primitives for the app's isolation: namespaces, mounts, chroot, credentials.

Python 3.11 has no ``os.unshare``/``os.setns``, so this module calls libc through ctypes.
:func:`prepare_child` runs in the forked child between ``fork`` and ``exec`` (subprocess's
``preexec_fn``). As root, that child (the "shim" the supervisor knows, in the host PID
namespace) unshares mount, UTS and PID namespaces, mounts the overlay root (or uses the
copied tree), bind-mounts ``/dev`` and the volumes at their targets, sets the hostname and
forks the namespace's init (PID 1: a fresh ``/proc``, chroot into the rootfs, forwards stop
signals, reaps orphans), which forks the app: it drops to the app's user and group and
execs. The app's exit status travels back through the init to the shim, which ends the same
way, so the supervisor sees the app's own status. Processes in the pod see only the pod.

Without root (the documented approximation) the app runs on the host with its rootfs as the
working directory, and volumes are symlinks inside the copied rootfs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
    init_pid_file: str = ""  # where the shim records the pid of the namespace's init
    enter_root_fd: int = -1  # enter: join the namespaces and root of enter_pid instead
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


def _setup_mounts(plan: ChildPlan) -> None:
    """Private mounts of the pod: overlay root, /dev, volumes, read-only root; hostname."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = plan.rootfs
    if plan.overlay is not None:
        lower, upper, work = plan.overlay
        mount("overlay", root, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
    dev = _inside(root, "/dev")
    os.makedirs(dev, exist_ok=True)
    mount("/dev", dev, None, MS_BIND | MS_REC)
    os.makedirs(_inside(root, "/proc"), exist_ok=True)
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


def _close_fds_except(*keep: int) -> None:
    """Drop inherited descriptors (subprocess's error pipe, the pod lock) in a shim process."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)


def _relay(child: int, status_fd: int) -> None:
    """The outer shim (never returns): end the way the app ended, as reported by the init."""
    data = b""
    while chunk := os.read(status_fd, 64):
        data += chunk
    _, init_status = os.waitpid(child, 0)
    status = int(data) if data.strip() else init_status
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    die_by_signal(os.WTERMSIG(status) if os.WIFSIGNALED(status) else signal.SIGKILL)


def die_by_signal(sig: int) -> None:
    """End this process by ``sig`` (its default action), as a shell would observe it."""
    with contextlib.suppress(OSError, ValueError):  # SIGKILL/SIGSTOP cannot be changed
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def _init(app: int, status_fd: int) -> None:
    """PID 1 of the pod's PID namespace (never returns): forward stop signals, reap, report."""

    def forward(signum: int, frame: object) -> None:
        del frame
        with contextlib.suppress(ProcessLookupError):
            os.kill(app, signum)

    for sig in _STOP_SIGNALS:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_STOP_SIGNALS))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(255)
        if pid == app:
            os.write(status_fd, str(status).encode())
            os._exit(0)


def _spawn_in_pid_namespace(plan: ChildPlan, *, join: bool) -> None:
    """Fork so that the process that returns (and execs) lives in the pod's PID namespace.

    Starting an app: this process (the shim the supervisor knows) forks the namespace's init,
    which mounts a fresh /proc, chroots and forks the app. Entering: this process has joined
    the namespaces already and forks the command. Only the app (or command) returns.
    """
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child:
        if plan.init_pid_file and not join:
            with open(plan.init_pid_file, "w") as out:
                out.write(str(child))
        os.close(write_fd)
        _close_fds_except(read_fd)
        _relay(child, read_fd)
    os.close(read_fd)
    if join:
        os.close(write_fd)
        return
    set_pdeathsig(signal.SIGKILL)
    try:
        mount("proc", _inside(plan.rootfs, "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        mount("/proc", _inside(plan.rootfs, "/proc"), None, MS_BIND | MS_REC)
    os.chroot(plan.rootfs)
    os.chdir("/")
    app = os.fork()
    if app:
        _close_fds_except(write_fd)
        _init(app, write_fd)
    os.close(write_fd)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def _join(plan: ChildPlan) -> None:
    """``enter``: the namespaces and root of a running app."""
    for ns, flag in (("mnt", CLONE_NEWNS), ("uts", CLONE_NEWUTS), ("pid", CLONE_NEWPID)):
        fd = os.open(f"/proc/{plan.enter_pid}/ns/{ns}", os.O_RDONLY)
        try:
            setns(fd, flag)
        finally:
            os.close(fd)
    os.fchdir(plan.enter_root_fd)
    os.chroot(".")


def prepare_child(plan: ChildPlan) -> None:
    """The ``preexec_fn``: report any failure on ``plan.error_fd`` before re-raising it."""
    try:
        if plan.enter_pid:
            _join(plan)
            _spawn_in_pid_namespace(plan, join=True)
        elif plan.isolate:
            set_pdeathsig(signal.SIGKILL)
            unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID)
            _setup_mounts(plan)
            _spawn_in_pid_namespace(plan, join=False)
        else:
            set_pdeathsig(signal.SIGKILL)
            os.chdir(_inside(plan.rootfs, "/"))
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if plan.isolate or plan.enter_pid:
            os.chdir(plan.workdir)
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
