"""Giving the memory of a burst of starts back to the system once the burst is over.

A burst (a thousand tasks applied at once, or an agent restart) has every task's handler,
watch event, body copy and ``rkt`` output in memory at the same time. When it is over,
Python frees those objects, but the C allocator keeps the freed pages: measured at 1,000
tasks, the live Python heap was 56 MiB while the agent's RSS stayed at 157 MiB, the
high-water mark of the burst (``bench/README.md``). Limiting glibc's arenas
(``MALLOC_ARENA_MAX=2``) changed nothing, so the pages are free space inside the heaps,
which glibc returns only when asked: ``malloc_trim(0)`` gives back every free page of
every arena (``madvise(MADV_DONTNEED)``), not only the top of the heap.

A burst is counted in ``Activity``: the change handlers kopf runs (a thousand creates at
once, or the re-confirmation of every task after an agent restart) and the starts of pods
(also those of the resync loop, which restarts exited pods). ``TrimPolicy`` decides when
(a value, unit-tested): after at least ``min_work`` of them, once none has been in
flight and none has begun for ``quiet`` seconds; at most once per burst, never during
one. ``release`` does it: a full garbage collection (cycles left by the
burst), then ``malloc_trim(0)`` in a thread (the call holds the allocator's locks, not
Python's). Where the C library has no ``malloc_trim`` (musl, macOS) only the collection
runs. Nothing here changes what the agent does, only what it keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import psutil

MIB = 1024 * 1024


class _Trim(Protocol):
    def __call__(self, pad: int, /) -> int: ...


@dataclass
class Activity:
    """A running count of the work that makes a burst, and how much of it is in flight."""

    begun: int = 0
    in_flight: int = 0

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self.begun += 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass
class TrimPolicy:
    """When to trim: ``due`` is asked once per tick with the work begun so far (a running
    count, ``Activity.begun``) and the work in flight."""

    quiet: float = 10.0
    min_work: int = 16
    _seen: int = 0
    _changed_at: float | None = None
    _trimmed_at: int = 0

    def due(self, now: float, *, begun: int, in_flight: int) -> bool:
        if begun != self._seen or in_flight or self._changed_at is None:
            # Still in a burst (or the first look): the quiet period starts again.
            self._seen = begun
            self._changed_at = now
            return False
        if begun - self._trimmed_at < self.min_work or now - self._changed_at < self.quiet:
            return False
        self._trimmed_at = begun
        return True


@functools.cache
def _malloc_trim() -> _Trim | None:
    try:  # the process's own symbols, the C library's among them (no ldconfig lookup)
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    func: _Trim = trim
    return func


@dataclass(frozen=True)
class Released:
    """What ``release`` did: the process's RSS before and after, and whether
    ``malloc_trim`` ran and gave pages back."""

    rss_before: int
    rss_after: int
    trimmed: bool


async def release() -> Released:
    """Collect garbage, then return the allocator's free pages to the system."""
    me = psutil.Process()
    before = me.memory_info().rss
    gc.collect()
    trim = _malloc_trim()
    trimmed = trim is not None and bool(await asyncio.to_thread(trim, 0))
    return Released(rss_before=before, rss_after=me.memory_info().rss, trimmed=trimmed)
