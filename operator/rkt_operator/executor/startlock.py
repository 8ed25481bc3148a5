"""The per-task start lock: one start of a task at a time, across agent restarts.

In-process an ``asyncio.Lock`` per task UID; across processes an ``flock`` on
``<task_root>/.locks/<uid>.lock``. The caller passes the locked descriptor to ``rkt prepare``
(``pass_fds``): the kernel keeps an ``flock`` while any copy of the descriptor is open, so a
prepare orphaned by a SIGKILLed agent keeps the task locked until it ends, and the restarted
agent then finds (and adopts) the pod it prepared instead of preparing a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from rkt_operator import errors
from rkt_operator.executor import discovery, files

log = logging.getLogger(__name__)


class StartLocks:
    def __init__(self, task_root: Path, *, deadline_seconds: float) -> None:
        self.task_root = task_root
        self.deadline_seconds = deadline_seconds
        self._local: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, uid: str) -> AsyncIterator[int]:
        """Hold the task's lock; yields the locked descriptor (close-on-exec, inheritable
        only through ``pass_fds``). Raises ``RktTimeout`` after the deadline."""
        async with self._local.setdefault(uid, asyncio.Lock()):
            path = files.lock_file(self.task_root, uid)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                await self._acquire(fd, uid)
                yield fd
            finally:
                os.close(fd)  # releases the flock, unless a prepare still holds a copy

    async def _acquire(self, fd: int, uid: str) -> None:
        deadline = time.monotonic() + self.deadline_seconds
        attempt = 0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise errors.RktTimeout(
                        f"another start of task {uid} (an earlier rkt prepare) is still running"
                    ) from None
                if attempt == 0:
                    log.info("waiting for an earlier start of the task uid=%s", uid)
                await asyncio.sleep(discovery.next_delay(attempt))
                attempt += 1

    def forget(self, uid: str) -> None:
        """Drop the task's lock (the task is gone) and its lock file."""
        self._local.pop(uid, None)
        files.remove_quietly(files.lock_file(self.task_root, uid))
