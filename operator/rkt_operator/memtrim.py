"""Giving the memory of a burst of starts back to the system once the burst is over.

A burst (a thousand tasks applied at once, or an agent restart) has every task's handler,
watch event, body copy and ``rkt`` output in memory at the same time. When it is over,
Python frees those objects, but the C allocator keeps the freed pages: measured at 1,000
tasks, the live Python heap was 56 MiB while the agent's RSS stayed at 157 MiB, the
high-water mark of the burst (``bench/README.md``). Limiting glibc's arenas
(``MALLOC_ARENA_MAX=2``) changed nothing, so the pages are free space inside the heaps,
which glibc returns only when asked: ``malloc_trim(0)`` gives back every free page of
every arena (``madvise(MADV_DONTNEED)``), not only the top of the heap.

``TrimPolicy`` decides when (a value, unit-tested): after at least ``min_starts`` starts,
once no start has been in flight and none has begun for ``quiet`` seconds; at most once per
burst, never during one. ``release`` does it: a full garbage collection (cycles left by the
burst), then ``malloc_trim(0)`` in a thread (the call holds the allocator's locks, not
Python's). Where the C library has no ``malloc_trim`` (musl, macOS) only the collection
runs. Nothing here changes what the agent does, only what it keeps.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
from dataclasses import dataclass, field
from typing import Protocol

import psutil

MIB = 1024 * 1024


class _Trim(Protocol):
    def __call__(self, pad: int, /) -> int: ...


@dataclass
class TrimPolicy:
    """When to trim: ``due`` is asked once per tick with the starts so far (a running
    count) and those in flight."""

    quiet: float = 10.0
    min_starts: int = 16
    _seen: int = 0
    _changed_at: float | None = None
    _trimmed_at: int = field(default=0)

    def due(self, now: float, *, starts: int, in_flight: int) -> bool:
        if starts != self._seen or in_flight or self._changed_at is None:
            # Still in a burst (or the first look): the quiet period starts again.
            self._seen = starts
            self._changed_at = now
            return False
        if starts - self._trimmed_at < self.min_starts or now - self._changed_at < self.quiet:
            return False
        self._trimmed_at = starts
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
