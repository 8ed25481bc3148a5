"""Pod directories, their states and locks, and UUID resolution, as in rkt's pkg/pod.

A pod lives in ``<dir>/pods/<kind>/<uuid>``; its state follows from the directory it is in
and whether the directory itself is ``flock``-ed (rkt locks the directory inode, so a rename
keeps the lock): ``run/`` locked is ``running``, unlocked ``exited``; ``prepare/`` locked is
``preparing``, unlocked ``aborted prepare``; ``exited-garbage/`` locked is ``exited
deleting``; ``garbage/`` locked is ``deleting``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from rkt_sim.errors import SimError

TYPE_CHECKING = False  # typing costs rkt-sim start-up time: only the type checker imports it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

KINDS = ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")
RESOLVABLE = ("prepare", "prepared", "run", "exited-garbage")
AFTER_RUN = ("exited", "exited garbage", "exited deleting", "deleting", "garbage")

APP_STATUS_DIR = Path("stage1/rootfs/rkt/status")
SUPERVISOR_STATUS = Path("stage1/rootfs/rkt/supervisor-status")


def pods_root(data_dir: Path) -> Path:
    return data_dir / "pods"


def ensure_layout(data_dir: Path) -> None:
    for kind in KINDS:
        (pods_root(data_dir) / kind).mkdir(parents=True, exist_ok=True, mode=0o750)


def open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def try_lock(fd: int, *, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def is_locked(path: Path) -> bool:
    """Whether someone holds an exclusive lock on the directory (a brief shared probe)."""
    try:
        fd = open_dir(path)
    except FileNotFoundError:
        return False
    try:
        return not try_lock(fd, shared=True)
    finally:
        os.close(fd)


class Pod:
    __slots__ = ("kind", "path", "uuid")

    def __init__(self, uuid: str, kind: str, path: Path) -> None:
        self.uuid = uuid
        self.kind = kind
        self.path = path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pod) and (self.uuid, self.kind, self.path) == (
            other.uuid,
            other.kind,
            other.path,
        )

    def __hash__(self) -> int:
        return hash((self.uuid, self.kind, self.path))

    def __repr__(self) -> str:
        return f"Pod({self.uuid!r}, {self.kind!r}, {self.path!r})"

    @property
    def state(self) -> str:
        locked = self.kind in ("prepare", "run", "exited-garbage", "garbage") and is_locked(
            self.path
        )
        return {
            "embryo": "embryo",
            "prepare": "preparing" if locked else "aborted prepare",
            "prepared": "prepared",
            "run": "running" if locked else "exited",
            "exited-garbage": "exited deleting" if locked else "exited garbage",
            "garbage": "deleting" if locked else "garbage",
        }[self.kind]

    def manifest(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.path / "pod").read_bytes()))
        except (OSError, ValueError):
            return None

    def created_ns(self) -> int | None:
        for name in ("pod-created", "pod"):
            with contextlib.suppress(OSError):
                return (self.path / name).stat().st_mtime_ns
        return None

    def pid_file(self) -> Path | None:
        for name in ("pid", "ppid"):
            if (self.path / name).is_file():
                return self.path / name
        return None

    def pid(self) -> int | None:
        path = self.pid_file()
        if path is None:
            return None
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def started_ns(self) -> int | None:
        path = self.pid_file()
        if path is None:
            return None
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return None

    def gc_marked_ns(self) -> int | None:
        if self.kind not in ("exited-garbage", "garbage"):
            return None
        try:
            return self.path.stat().st_ctime_ns
        except OSError:
            return None

    def app_exit_codes(self) -> dict[str, int]:
        codes: dict[str, int] = {}
        directory = self.path / APP_STATUS_DIR
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                if entry.name.endswith(("-created", "-started")):
                    continue
                with contextlib.suppress(OSError, ValueError):
                    codes[entry.name] = int(Path(entry.path).read_text().strip())
        return codes

    def net_info(self) -> list[dict[str, Any]] | None:
        try:
            data = json.loads((self.path / "net-info.json").read_text())
        except (OSError, ValueError):
            return None
        return list(data) if isinstance(data, list) else None

    def supervisor_ready(self) -> bool:
        try:
            return os.readlink(self.path / SUPERVISOR_STATUS) == "ready"
        except OSError:
            return False

    def move(self, kind: str) -> None:
        target = self.path.parent.parent / kind / self.uuid
        self.path.rename(target)
        self.path = target
        self.kind = kind


def _scan(data_dir: Path, kinds: tuple[str, ...]) -> Iterator[Pod]:
    root = pods_root(data_dir)
    for kind in kinds:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(root / kind):
                if entry.is_dir(follow_symlinks=False):
                    yield Pod(entry.name, kind, Path(entry.path))


def walk(data_dir: Path, kinds: tuple[str, ...] = RESOLVABLE) -> list[Pod]:
    """Pods in ``kinds``, sorted by UUID (what ``rkt list`` shows)."""
    return sorted(_scan(data_dir, kinds), key=lambda p: p.uuid)


def resolve(data_dir: Path, arg: str) -> Pod:
    """Lower-case prefix match over the addressable pod directories."""
    prefix = arg.lower()
    matches = [p for p in _scan(data_dir, RESOLVABLE) if p.uuid.startswith(prefix)]
    # A pod moving between directories during the scan may be seen twice.
    unique = {p.uuid: p for p in matches}
    if not unique:
        raise SimError(f'no matches found for "{arg}"')
    if len(unique) > 1:
        raise SimError(f"ambiguous uuid, {len(unique)} matches")
    pod = next(iter(unique.values()))
    for kind in (pod.kind, *RESOLVABLE):  # re-locate it if it moved meanwhile
        candidate = pods_root(data_dir) / kind / pod.uuid
        if candidate.is_dir():
            return Pod(pod.uuid, kind, candidate)
    raise SimError(f'no matches found for "{arg}"')


def locate(data_dir: Path, uuid: str) -> Pod | None:
    """Find a pod by full UUID in whichever directory it currently is."""
    for kind in (*RESOLVABLE, "garbage"):
        path = pods_root(data_dir) / kind / uuid
        if path.is_dir():
            return Pod(uuid, kind, path)
    return None


def read_uuid_file(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SimError(f"unable to read UUID from file: {exc}", code=1) from None


def lock_for_delete(path: Path, attempts: int = 20) -> int | None:
    """Take the exclusive lock a deletion needs, tolerating brief shared probes by readers."""
    fd = open_dir(path)
    for _ in range(attempts):
        if try_lock(fd):
            return fd
        time.sleep(0.01)
    os.close(fd)
    return None


def delete_tree(path: Path) -> None:
    """Remove a pod directory, unmounting anything a crashed run left mounted below it."""
    _unmount_below(path)
    import shutil  # only rm and gc remove trees

    shutil.rmtree(path, ignore_errors=True)


def _unmount_below(path: Path) -> None:
    prefix = str(path) + "/"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    targets = [m.split()[1] for m in mounts if len(m.split()) > 1]
    targets = [t.encode().decode("unicode_escape") for t in targets]
    below = sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True)
    if not below:
        return
    from rkt_sim import isolation

    for target in below:
        isolation.umount(target)
