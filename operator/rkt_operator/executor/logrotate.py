"""Rotation of a pod's output files, Nomad's ``logs`` stanza done by copy-then-truncate.

Layout, per pod and stream, in ``<task dir>/alloc/logs/`` (mounted at /alloc/logs in the
pod, as under Nomad): ``<uuid>.stdout.0`` is the file being written, ``<uuid>.stdout.1`` the
most recent rotated one, ``.2`` the one before, and so on (logrotate's numbering: a higher
index is older). At most ``max_files`` files are kept per stream, the current one included.

The writer is the ``rkt run-prepared`` process (and everything it spawned), which holds the
current file open with ``O_APPEND``: never a pipe, so nobody's death can SIGPIPE the pod.
Rotation therefore never moves the current file: once it reached ``max_file_bytes`` it is
copied to a new ``.1`` (older files shifted up, the oldest deleted) and truncated in place;
the next append lands at offset 0. Bytes written between the end of the copy and the
truncate (a few microseconds; the copy catches up with late writes before it truncates)
are lost, as with logrotate's ``copytruncate``.

Rotators: the pod's supervisor (``shim``, about once a second, with the limits of the
per-pod limits file the agent keeps up to date) and the agent on each resync (the only one
for pods launched as systemd units). They exclude each other with ``flock`` on the logs
directory. The directory is writable by the app, so everything in it is opened relative to
a directory descriptor, without following symbolic links.

Standard library only: the supervisor imports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

STREAMS = ("stdout", "stderr")
CHECK_INTERVAL_SECONDS = 1.0
DEFAULT_MAX_FILES = 10
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
_MAX_INDEX = 1000
_COPY_CHUNK = 1 << 20
_CATCH_UP_ROUNDS = 4
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_UUID = r"(?P<uuid>[0-9a-f][0-9a-f-]{0,63})\.(?P<stream>stdout|stderr)"
_NAME = re.compile(_UUID + r"\.(?P<index>0|[1-9][0-9]{0,3})")
_TMP = re.compile(r"\." + _UUID + r"\.rotating")


@dataclass(frozen=True)
class LogLimits:
    """How many files per stream (the current one included) and when to rotate."""

    max_files: int = DEFAULT_MAX_FILES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def to_json(self) -> bytes:
        return json.dumps(
            {"max_files": self.max_files, "max_file_bytes": self.max_file_bytes}
        ).encode()

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> LogLimits | None:
        """The limits of a parsed limits file, or None when it does not hold sane ones."""
        files, size = data.get("max_files"), data.get("max_file_bytes")
        if not (isinstance(files, int) and isinstance(size, int)):
            return None
        if isinstance(files, bool) or isinstance(size, bool) or files < 1 or size < 1:
            return None
        return cls(max_files=min(files, _MAX_INDEX), max_file_bytes=size)


def current_file(logs_dir: Path, uuid: str, stream: str) -> Path:
    """The file the pod writes ``stream`` to."""
    return logs_dir / f"{uuid}.{stream}.0"


def parse_name(name: str) -> tuple[str, str, int] | None:
    """``(uuid, stream, index)`` of a log file name, None for any other name."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    return match["uuid"], match["stream"], int(match["index"])


def _base(path: Path) -> str:
    parsed = parse_name(path.name)
    if parsed is None or parsed[2] != 0:
        raise ValueError(f"{path} is not the current file of a log stream")
    return f"{parsed[0]}.{parsed[1]}"


def due(path: Path, limits: LogLimits) -> bool:
    """Has the current file reached the rotation size? One ``lstat``: the cheap check."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size >= limits.max_file_bytes


@contextlib.contextmanager
def _locked_dir(directory: Path) -> Iterator[int | None]:
    """The logs directory's descriptor, locked against the other rotator; None if busy."""
    dir_fd = os.open(directory, _DIR_FLAGS)
    try:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield dir_fd
    finally:
        os.close(dir_fd)


def _rotated(dir_fd: int, base: str) -> dict[int, str]:
    """Index -> name of the rotated files (index >= 1) of one stream."""
    out: dict[int, str] = {}
    for name in os.listdir(dir_fd):
        parsed = parse_name(name)
        if parsed is not None and f"{parsed[0]}.{parsed[1]}" == base and parsed[2] >= 1:
            out[parsed[2]] = name
    return out


def _unlink(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _drop_beyond(dir_fd: int, base: str, first_doomed: int) -> int:
    doomed = [name for index, name in _rotated(dir_fd, base).items() if index >= first_doomed]
    for name in doomed:
        _unlink(dir_fd, name)
    return len(doomed)


def _shift(dir_fd: int, base: str, max_files: int) -> None:
    """Make room for a new ``.1``: drop what would pass the limit, move the rest up one."""
    _drop_beyond(dir_fd, base, max_files - 1)
    present = _rotated(dir_fd, base)
    for index in sorted(present, reverse=True):
        os.rename(present[index], f"{base}.{index + 1}", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_out(src: int, dir_fd: int, name: str, mode: int) -> None:
    """Copy the whole of ``src`` (and what is appended meanwhile) into a new file ``name``."""
    _unlink(dir_fd, name)
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        position = 0
        for _ in range(_CATCH_UP_ROUNDS):
            end = os.fstat(src).st_size
            if end <= position:
                break
            while position < end:
                chunk = os.pread(src, min(_COPY_CHUNK, end - position), position)
                if not chunk:
                    break
                _write_all(out, chunk)
                position += len(chunk)
    except BaseException:
        os.close(out)
        _unlink(dir_fd, name)
        raise
    os.close(out)


def rotate(path: Path, limits: LogLimits) -> bool:
    """Rotate the current file ``path`` (``<uuid>.<stream>.0``) if it reached
    ``limits.max_file_bytes``. False when not due, or when another rotator holds the lock.
    Raises ``OSError`` (disk full...) with the current file left as it was."""
    if not due(path, limits):
        return False
    base = _base(path)
    with _locked_dir(path.parent) as dir_fd:
        if dir_fd is None:
            return False
        fd = os.open(path.name, os.O_RDWR | _FILE_FLAGS, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < limits.max_file_bytes:
                return False  # the other rotator was first
            if limits.max_files > 1:
                _shift(dir_fd, base, limits.max_files)
                tmp = f".{base}.rotating"
                _copy_out(fd, dir_fd, tmp, info.st_mode & 0o777)
                os.rename(tmp, f"{base}.1", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                _drop_beyond(dir_fd, base, 1)
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
    return True


def prune(path: Path, max_files: int) -> int:
    """Delete the rotated files of ``path``'s stream beyond ``max_files`` (after the limit
    was lowered). Returns how many were deleted (0 when the other rotator is busy)."""
    base = _base(path)
    with _locked_dir(path.parent) as dir_fd:
        return 0 if dir_fd is None else _drop_beyond(dir_fd, base, max(max_files, 1))


def _owner(name: str) -> str | None:
    """The pod UUID a file of the logs directory belongs to (log files and our temporary
    copies), None for anything else."""
    match = _TMP.fullmatch(name)
    if match is not None:
        return match["uuid"]
    parsed = parse_name(name)
    return parsed[0] if parsed is not None else None


def forget_pods(logs_dir: Path, keep: str, *, previous: int = 1) -> list[str]:
    """Delete the log files of the task's other pods, except those of the ``previous`` most
    recently written ones (``keep`` is the pod about to start). Returns the UUIDs forgotten."""
    try:
        entries = list(os.scandir(logs_dir))
    except OSError:
        return []
    owned: list[tuple[str, os.DirEntry[str]]] = []
    newest: dict[str, float] = {}
    for entry in entries:
        uuid = _owner(entry.name)
        if uuid is None or uuid == keep:
            continue
        owned.append((uuid, entry))
        if entry.name.startswith("."):
            continue  # a copy left by an interrupted rotation says nothing about recency
        with contextlib.suppress(OSError):
            mtime = entry.stat(follow_symlinks=False).st_mtime
            newest[uuid] = max(newest.get(uuid, 0.0), mtime)
    ranked = sorted({u for u, _ in owned}, key=lambda u: newest.get(u, 0.0), reverse=True)
    doomed = set(ranked[max(previous, 0) :])
    for uuid, entry in owned:
        if uuid in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    return sorted(doomed)
