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
    """The shared, invalidatable view of ``rkt list`` (see the module docstring). Each
    listing is indexed by task uid once, so a task's look-up does not scan the whole node
    (1,000 tasks resyncing against a 1,000-pod listing were a million comparisons per
    resync period)."""

    def __init__(self, executor: Executor, *, max_age: float) -> None:
        self._executor = executor
        self._max_age = max_age
        self._epoch = 0
        self._snapshot: tuple[int, float, _Index] | None = None
        self._inflight: tuple[int, asyncio.Task[_Index]] | None = None

    def invalidate(self) -> None:
        self._epoch += 1

    async def pods_for(self, uid: str) -> list[PodObservation]:
        """The task's pods in the listing, newest first (a list of the caller's own)."""
        return list((await self._all()).get(uid, ()))

    async def _all(self) -> _Index:
        epoch = self._epoch
        if self._snapshot is not None:
            taken_epoch, taken_at, pods = self._snapshot
            if taken_epoch == epoch and time.monotonic() - taken_at < self._max_age:
                return pods
        if self._inflight is None or self._inflight[0] != epoch or self._inflight[1].done():
            self._inflight = (epoch, asyncio.create_task(self._list(epoch)))
        return await asyncio.shield(self._inflight[1])

    async def _list(self, epoch: int) -> _Index:
        started = time.monotonic()
        pods = _index(await self._executor.list_pods())
        if self._epoch == epoch:
            self._snapshot = (epoch, started, pods)
        return pods


_Index = dict[str, tuple[PodObservation, ...]]


def _index(pods: list[PodObservation]) -> _Index:
    """The pods of each task uid, newest first."""
    by_uid: dict[str, list[PodObservation]] = {}
    for pod in pods:
        if pod.identity is not None:
            by_uid.setdefault(pod.identity.uid, []).append(pod)
    return {uid: tuple(sorted(mine, key=_created, reverse=True)) for uid, mine in by_uid.items()}


def _created(pod: PodObservation) -> float:
    return pod.created_at.timestamp() if pod.created_at else 0.0
