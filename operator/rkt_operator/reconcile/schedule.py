"""When each task of the node is looked at again: the pure bookkeeping of the agent's one
resync loop (``rkt_operator.handlers.NodeLoop``), which replaced a kopf timer per task.

A task is first due one resync interval after the loop first sees it (its create or resume
handler has just reconciled it), then one interval after each pass ends, or sooner when the
pass said something falls due before that (``Outcome.requeue_after``: a restart's back-off,
a start failure's next try), so a back-off of 10 s restarts the pod after 10 s, not at the
first resync after it. Tasks with probes also get a probe pass on every tick of the loop.
A task is never given a second pass while one is running. Times are the caller's clock
(seconds, monotonic); nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import Enum


class Pass(Enum):
    RESYNC = "resync"
    PROBE = "probe"


@dataclass
class Schedule:
    interval: float
    # A pass asked for less than this is given this (one tick of the loop).
    min_delay: float = 1.0
    _due: dict[str, float] = field(default_factory=dict)
    _running: set[str] = field(default_factory=set)

    def next_pass(self, uid: str, now: float, *, probed: bool) -> Pass | None:
        """The pass the task is due for at ``now``, if any (and, if so, it is now running)."""
        if uid in self._running:
            return None
        due = self._due.setdefault(uid, now + self.interval)
        kind = Pass.RESYNC if now >= due else Pass.PROBE if probed else None
        if kind is not None:
            self._running.add(uid)
        return kind

    def finished(self, uid: str, kind: Pass, now: float, requeue_after: float | None) -> None:
        """A pass of the task ended at ``now``; ``requeue_after``: what it said is due."""
        self._running.discard(uid)
        if uid not in self._due:  # forgotten while the pass ran (the task is gone)
            return
        if kind is Pass.RESYNC:
            self._due[uid] = now + self.interval
        if requeue_after is not None:
            soon = now + max(self.min_delay, requeue_after)
            self._due[uid] = min(self._due[uid], soon)

    def keep_only(self, uids: Collection[str]) -> list[str]:
        """Forget the tasks not in ``uids`` (deleted, or no longer this node's); returns them."""
        gone = [uid for uid in self._due if uid not in uids]
        self.forget(gone)
        return gone

    def forget(self, uids: Iterable[str]) -> None:
        for uid in uids:
            self._due.pop(uid, None)

    def running(self) -> int:
        return len(self._running)

    def __len__(self) -> int:
        return len(self._due)
