"""One ``rkt list`` shared by the resync of every task on the node.

A snapshot younger than ``max_age`` is reused and a list in flight is joined, so N tasks
re-checked every few seconds cost about one ``rkt list`` per period, not N. Any action of the
agent (start, stop, remove) invalidates the snapshot through an epoch counter, so a decision
never rests on a list taken before the agent's own last change.
"""

from __future__ import annotations

import asyncio
import time

from rkt_operator.executor.service import Executor
from rkt_operator.rkt.types import PodObservation


class PodCache:
    """The shared, invalidatable view of ``rkt list`` (see the module docstring)."""

    def __init__(self, executor: Executor, *, max_age: float) -> None:
        self._executor = executor
        self._max_age = max_age
        self._epoch = 0
        self._snapshot: tuple[int, float, list[PodObservation]] | None = None
        self._inflight: tuple[int, asyncio.Task[list[PodObservation]]] | None = None

    def invalidate(self) -> None:
        self._epoch += 1

    async def pods_for(self, uid: str) -> list[PodObservation]:
        pods = await self._all()
        mine = [p for p in pods if p.identity is not None and p.identity.uid == uid]
        mine.sort(key=lambda p: p.created_at.timestamp() if p.created_at else 0.0, reverse=True)
        return mine

    async def _all(self) -> list[PodObservation]:
        epoch = self._epoch
        if self._snapshot is not None:
            taken_epoch, taken_at, pods = self._snapshot
            if taken_epoch == epoch and time.monotonic() - taken_at < self._max_age:
                return pods
        if self._inflight is None or self._inflight[0] != epoch or self._inflight[1].done():
            self._inflight = (epoch, asyncio.create_task(self._list(epoch)))
        return await asyncio.shield(self._inflight[1])

    async def _list(self, epoch: int) -> list[PodObservation]:
        started = time.monotonic()
        pods = await self._executor.list_pods()
        if self._epoch == epoch:
            self._snapshot = (epoch, started, pods)
        return pods
