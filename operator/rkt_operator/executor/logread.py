"""Reading one stream of a pod's log files (``rkt-operator logs``): all of it, its last
lines, and following it across rotations.

The files are those ``logrotate`` writes: ``<uuid>.<stream>.N`` (the highest index is the
oldest) and the current ``.0``. A reader takes the logs directory's lock shared while it
looks, so it never sees a rotation half done: it opens every file then, notes how far the
current file goes and which file is the newest rotated one, and reads the open files after
letting go. A follower that finds a new rotated file reads it on from where it was in the
current file, then the current file from its start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rkt_operator.executor import logrotate

_CHUNK = 1 << 16
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FileId = tuple[int, int]  # (st_dev, st_ino)


@contextlib.contextmanager
def _shared(directory: Path) -> Iterator[int]:
    """The logs directory's descriptor, locked shared: no rotation meanwhile."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_SH)
        yield dir_fd
    finally:
        os.close(dir_fd)


def _rotated(dir_fd: int, uuid: str, stream: str) -> list[tuple[int, str]]:
    """(index, name) of the stream's rotated files, newest (index 1) first."""
    out = []
    for name in os.listdir(dir_fd):
        parsed = logrotate.parse_name(name)
        if parsed is not None and parsed[:2] == (uuid, stream) and parsed[2] >= 1:
            out.append((parsed[2], name))
    return sorted(out)


def _open(dir_fd: int, name: str) -> int | None:
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _file_id(fd: int) -> FileId:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


@dataclass
class Piece:
    """An open log file and the byte range of it to read."""

    fd: int
    start: int
    end: int | None = None  # None: to its end


@dataclass
class Follower:
    """Where a reader of one stream is: the offset reached in the current file and the
    newest rotated file it knows of."""

    logs_dir: Path
    uuid: str
    stream: str
    offset: int = 0
    known: FileId | None = None

    def snapshot(self) -> list[Piece]:
        """Every file of the stream, oldest first, the current one up to where it is now;
        the follower continues after them."""
        pieces: list[Piece] = []
        with _shared(self.logs_dir) as dir_fd:
            rotated = _rotated(dir_fd, self.uuid, self.stream)
            for _, name in reversed(rotated):
                fd = _open(dir_fd, name)
                if fd is not None:
                    pieces.append(Piece(fd, 0))
                    self.known = _file_id(fd)  # the last one opened is the newest
            current = _open(dir_fd, f"{self.uuid}.{self.stream}.0")
            if current is not None:
                self.offset = os.fstat(current).st_size
                pieces.append(Piece(current, 0, self.offset))
        return pieces

    def poll(self) -> list[Piece]:
        """What was written since the last look: the rest of the file that was current, if
        it was rotated meanwhile, newer rotated files, and the new part of the current one."""
        pieces: list[Piece] = []
        with _shared(self.logs_dir) as dir_fd:
            rotated = _rotated(dir_fd, self.uuid, self.stream)
            opened = [
                (fd, _file_id(fd)) for _, name in rotated if (fd := _open(dir_fd, name)) is not None
            ]
            ids = [file_id for _, file_id in opened]
            newest = ids[0] if ids else None
            if newest != self.known:
                if self.known in ids:
                    fresh = opened[: ids.index(self.known)]
                    start = self.offset
                elif self.known is None:
                    fresh, start = opened, self.offset
                else:  # what we were reading was deleted already: take what is left
                    fresh, start = opened, 0
                for position, (fd, _) in enumerate(reversed(fresh)):
                    pieces.append(Piece(fd, start if position == 0 else 0))
                self.known, self.offset = newest, 0
            for fd, _ in opened:
                if all(piece.fd != fd for piece in pieces):
                    os.close(fd)
            current = _open(dir_fd, f"{self.uuid}.{self.stream}.0")
            if current is not None:
                size = os.fstat(current).st_size
                if size < self.offset:  # truncated without a copy (maxFiles 1)
                    self.offset = 0
                pieces.append(Piece(current, self.offset, size))
                self.offset = size
        return pieces


def chunks(pieces: list[Piece]) -> Iterator[bytes]:
    """The bytes of ``pieces`` in order; closes their files."""
    try:
        for piece in pieces:
            position = piece.start
            while piece.end is None or position < piece.end:
                want = _CHUNK if piece.end is None else min(_CHUNK, piece.end - position)
                data = os.pread(piece.fd, want, position)
                if not data:
                    break
                position += len(data)
                yield data
    finally:
        for piece in pieces:
            os.close(piece.fd)


def tail(pieces: list[Piece], lines: int) -> bytes:
    """The last ``lines`` lines of ``pieces``, reading from the end; closes their files."""
    blocks: list[bytes] = []  # newest first
    newlines = 0
    try:
        for piece in reversed(pieces):
            end = piece.end if piece.end is not None else os.fstat(piece.fd).st_size
            position = end
            while position > piece.start and newlines <= lines:
                size = min(_CHUNK, position - piece.start)
                position -= size
                block = os.pread(piece.fd, size, position)
                blocks.append(block)
                newlines += block.count(b"\n")
            if newlines > lines:
                break
    finally:
        for piece in pieces:
            os.close(piece.fd)
    if lines <= 0:
        return b""
    found = b"".join(reversed(blocks))
    body = found[:-1] if found.endswith(b"\n") else found
    kept = body.split(b"\n")[-lines:]
    return b"\n".join(kept) + (b"\n" if found.endswith(b"\n") else b"")


def since(pieces: list[Piece], cutoff: float) -> list[Piece]:
    """The pieces whose file was last written at or after ``cutoff`` (a wall-clock time);
    closes the others. A file is in or out whole: see ``since_lines`` for a finer cut."""
    kept = []
    for piece in pieces:
        if os.fstat(piece.fd).st_mtime >= cutoff:
            kept.append(piece)
        else:
            os.close(piece.fd)
    return kept


# The console prefix of real rkt's host stage1: systemd in the pod forwards the app's output
# through its journal to the console, each line starting with the kernel's CLOCK_MONOTONIC
# seconds when journald forwarded it (when the kernel's printk.time is on), then the unit.
_STAMP = re.compile(rb"\[\s*(\d{1,10})\.(\d{6})\] ")


def _stamp(line: bytes) -> float | None:
    match = _STAMP.match(line)
    return None if match is None else int(match[1]) + int(match[2]) / 1e6


def _cut(piece: Piece, older: float) -> int | None:
    """The offset just after the last line of ``piece`` stamped before ``older`` (a
    CLOCK_MONOTONIC time), None when it has none."""
    end = piece.end if piece.end is not None else os.fstat(piece.fd).st_size
    position, found, rest = piece.start, None, b""
    while position < end:
        data = os.pread(piece.fd, min(_CHUNK, end - position), position)
        if not data:
            break
        block = rest + data
        base = position - len(rest)
        position += len(data)
        start = 0
        while (newline := block.find(b"\n", start)) >= 0:
            stamp = _stamp(block[start:newline])
            if stamp is not None and stamp < older:
                found = base + newline + 1
            start = newline + 1
        rest = block[start:]
    return found


def since_lines(pieces: list[Piece], cutoff: float, *, now: float, uptime: float) -> list[Piece]:
    """``since``, then, in files of this boot, leaves out every line up to the last one
    stamped before ``cutoff`` (real rkt's console stamps, see ``_STAMP``; ``now`` is the wall
    clock and ``uptime`` CLOCK_MONOTONIC, read together). Lines without a stamp (rkt-sim's,
    stage1's own) are placed by their stamped neighbours, and kept when nothing places them
    before ``cutoff``: such a file is still in or out whole. Closes what it leaves out."""
    kept = since(pieces, cutoff)
    boot = now - uptime
    older = cutoff - boot  # ``cutoff`` on CLOCK_MONOTONIC
    for index in range(len(kept) - 1, -1, -1):
        piece = kept[index]
        if os.fstat(piece.fd).st_mtime < boot:
            break  # written before this boot: its stamps count from another start
        offset = _cut(piece, older)
        if offset is None:
            continue
        for dropped in kept[:index]:  # lines are in order: all of these are older still
            os.close(dropped.fd)
        piece.start = offset
        return kept[index:]
    return kept


def pods_by_recency(logs_dirs: list[Path]) -> list[tuple[Path, str]]:
    """The logs directory and UUID of every pod with a current log file among
    ``logs_dirs``, the most recently written first."""
    newest: dict[tuple[Path, str], float] = {}
    for directory in logs_dirs:
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                parsed = logrotate.parse_name(entry.name)
                if parsed is None or parsed[2] != 0:
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
                key = (directory, parsed[0])
                newest[key] = max(newest.get(key, mtime), mtime)
    return sorted(newest, key=lambda key: newest[key], reverse=True)


def newest_pod(logs_dirs: list[Path]) -> tuple[Path, str] | None:
    """The logs directory and UUID of the most recently written pod among ``logs_dirs``
    (when rkt no longer knows the task's pods)."""
    found = pods_by_recency(logs_dirs)
    return found[0] if found else None
