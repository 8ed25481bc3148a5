"""The agent's side of log rotation: keeping each running pod's log files within the task's
``spec.logs`` limits on every resync.

Per pod: the limits file its supervisor reads is rewritten when the limits changed (a live
update: the pod keeps running), and the files are rotated when due. The supervisor rotates
on its own about once a second; the agent's pass covers pods whose supervisor is gone and
pods run as systemd units (no supervisor of ours). Both rotate under the same lock
(``logrotate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from rkt_operator.executor import files, logrotate
from rkt_operator.rkt.types import TaskDirs, TaskIdentity

log = logging.getLogger(__name__)


class LogKeeper:
    def __init__(self, task_root: Path) -> None:
        self.task_root = task_root
        self._written: dict[str, logrotate.LogLimits] = {}  # uuid -> limits known on disk

    async def tend(self, identity: TaskIdentity, uuid: str, limits: logrotate.LogLimits) -> int:
        """Apply ``limits`` to the pod ``uuid`` of the task; how many files were rotated.
        When nothing changed and nothing is due: one ``lstat`` per stream. Raises
        ``OSError``."""
        root = TaskDirs.for_task(self.task_root, identity).root
        if self._written.get(uuid) != limits:
            await asyncio.to_thread(self._apply, root, uuid, limits)
            self._written[uuid] = limits
        rotated = 0
        for path in files.log_files(root, uuid):
            if logrotate.due(path, limits) and await asyncio.to_thread(
                logrotate.rotate, path, limits
            ):
                log.info("log rotated uuid=%s file=%s", uuid, path.name)
                rotated += 1
        return rotated

    def forget(self, uuid: str) -> None:
        """The pod was removed."""
        self._written.pop(uuid, None)

    @staticmethod
    def _apply(root: Path, uuid: str, limits: logrotate.LogLimits) -> None:
        path = files.log_limits_file(root, uuid)
        if not root.is_dir() or files.read_log_limits(path) == limits:
            return
        files.write_log_limits(path, limits)
        for current in files.log_files(root, uuid):
            with contextlib.suppress(FileNotFoundError):
                logrotate.prune(current, limits.max_files)
        log.info(
            "log limits set uuid=%s max_files=%d max_file_bytes=%d",
            uuid, limits.max_files, limits.max_file_bytes,
        )  # fmt: skip
