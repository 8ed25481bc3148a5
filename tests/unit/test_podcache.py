"""The shared pod listing (``reconcile.podcache``): one ``rkt list`` for many look-ups, each
task's pods found through an index, newest first, as lists of the caller's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from rkt_operator.executor.service import Executor
from rkt_operator.reconcile.podcache import PodCache
from rkt_operator.rkt.types import PodObservation, TaskIdentity

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _pod(uuid: str, uid: str | None, minutes: int | None) -> PodObservation:
    return PodObservation(
        uuid=uuid,
        identity=TaskIdentity("ns", f"task-{uid}", uid, 1) if uid else None,
        state="running",
        running=True,
        finished=False,
        exit_code=None,
        ip=None,
        created_at=None if minutes is None else T0 + timedelta(minutes=minutes),
        started_at=None,
        finished_at=None,
    )


class _Lister:
    def __init__(self, pods: list[PodObservation]) -> None:
        self.pods = pods
        self.calls = 0

    async def list_pods(self) -> list[PodObservation]:
        self.calls += 1
        return list(self.pods)


async def test_each_task_gets_its_pods_newest_first_from_one_listing() -> None:
    lister = _Lister([
        _pod("a-old", "a", 1), _pod("b-1", "b", 5), _pod("a-new", "a", 3),
        _pod("foreign", None, 9), _pod("a-undated", "a", None),
    ])  # fmt: skip
    cache = PodCache(cast(Executor, cast(Any, lister)), max_age=60.0)

    assert [p.uuid for p in await cache.pods_for("a")] == ["a-new", "a-old", "a-undated"]
    assert [p.uuid for p in await cache.pods_for("b")] == ["b-1"]
    assert await cache.pods_for("nobody") == []
    assert lister.calls == 1

    mine = await cache.pods_for("a")
    mine.clear()  # the caller's own list
    assert len(await cache.pods_for("a")) == 3

    lister.pods.append(_pod("b-2", "b", 7))
    cache.invalidate()  # the agent changed something: the next look lists again
    assert [p.uuid for p in await cache.pods_for("b")] == ["b-2", "b-1"]
    assert lister.calls == 2
