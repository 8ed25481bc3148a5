"""When the agent gives a burst's memory back (``memtrim.TrimPolicy``), and that it can."""

from __future__ import annotations

import ctypes

import psutil
import pytest

from rkt_operator import memtrim

MIB = 1024 * 1024


def test_no_trim_during_a_burst_one_after_it_has_been_quiet() -> None:
    policy = memtrim.TrimPolicy(quiet=10.0, min_work=16)
    assert not policy.due(0.0, begun=0, in_flight=0)  # first look
    for second in range(1, 40):  # 40 starts, 8 at a time
        assert not policy.due(float(second), begun=second, in_flight=8)
    assert not policy.due(40.0, begun=39, in_flight=0)  # quiet since the last one seen (39 s)
    assert not policy.due(48.9, begun=39, in_flight=0)
    assert policy.due(49.0, begun=39, in_flight=0)
    assert not policy.due(51.0, begun=39, in_flight=0)  # once per burst
    assert not policy.due(500.0, begun=39, in_flight=0)


def test_a_start_in_flight_or_a_new_one_restarts_the_quiet_period() -> None:
    policy = memtrim.TrimPolicy(quiet=10.0, min_work=1)
    policy.due(0.0, begun=5, in_flight=1)
    assert not policy.due(20.0, begun=5, in_flight=1)  # a long start is still the burst
    assert not policy.due(21.0, begun=5, in_flight=0)
    assert not policy.due(25.0, begun=6, in_flight=0)  # a new one began (and ended)
    assert not policy.due(34.9, begun=6, in_flight=0)
    assert policy.due(35.0, begun=6, in_flight=0)


def test_a_few_starts_are_not_worth_a_trim() -> None:
    policy = memtrim.TrimPolicy(quiet=10.0, min_work=16)
    policy.due(0.0, begun=0, in_flight=0)
    policy.due(1.0, begun=15, in_flight=0)
    assert not policy.due(100.0, begun=15, in_flight=0)
    policy.due(101.0, begun=16, in_flight=0)
    assert policy.due(111.0, begun=16, in_flight=0)
    policy.due(112.0, begun=31, in_flight=0)  # 15 more since that trim
    assert not policy.due(200.0, begun=31, in_flight=0)


def test_activity_counts_work_begun_and_in_flight_also_when_it_fails() -> None:
    activity = memtrim.Activity()
    with activity.track(), activity.track():
        assert (activity.begun, activity.in_flight) == (2, 2)
    with pytest.raises(RuntimeError), activity.track():
        raise RuntimeError("a failed handler")
    assert (activity.begun, activity.in_flight) == (3, 0)


async def test_release_returns_freed_heap_pages_to_the_system() -> None:
    """The agent ships on glibc (Debian's Python in its image; the suite runs on glibc too).
    Fill the C heap with 64 MiB of blocks glibc keeps (below its mmap threshold), free
    them while one block above them pins the heap's top: the process keeps the pages
    (freeing alone gives nothing back), and ``release`` returns them."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 1024
    blocks = [libc.malloc(size) for _ in range(1024)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # resident
    pin = libc.malloc(size)
    ctypes.memset(pin, 1, size)
    me = psutil.Process()
    try:
        for block in blocks:
            libc.free(block)
        kept = me.memory_info().rss
        done = await memtrim.release()
        assert done.trimmed
        given_back = kept - me.memory_info().rss
        assert done.rss_before - done.rss_after >= given_back - MIB
        assert given_back > 32 * MIB, f"only {given_back / MIB:.1f} MiB given back"
    finally:
        libc.free(pin)


async def test_without_malloc_trim_release_only_collects(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C library without ``malloc_trim`` (musl, macOS): a collection, no trim, no error."""
    monkeypatch.setattr(memtrim, "_malloc_trim", lambda: None)
    collected: list[bool] = []
    monkeypatch.setattr(memtrim.gc, "collect", lambda: collected.append(True) or 0)
    done = await memtrim.release()
    assert done.trimmed is False
    assert collected == [True]
    assert done.rss_after > 0
