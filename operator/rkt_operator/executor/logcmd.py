"""``rkt-operator logs NAMESPACE/NAME``: a task's pod output, read on the node that runs it
(on a cluster: ``kubectl -n rkt-operator exec <agent pod on that node> -- rkt-operator logs
ns/task``).

The pod is the task's newest pod that rkt reports (found by the identity annotations every
pod carries); when rkt knows none any more, the most recently written log files of the
task's directory. Prints the whole stream (stdout, or stderr), or its last lines, and with
``follow`` goes on printing what the pod writes until it exits.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rkt_operator import errors
from rkt_operator.executor import files, logread
from rkt_operator.executor.service import Executor
from rkt_operator.model import refs
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import TaskDirs
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.25
_STATE_CHECK_POLLS = 8  # follow: ask rkt whether the pod still runs every 8 polls (2 s)
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Write = Callable[[str], object]


@dataclass(frozen=True)
class Target:
    logs_dir: Path
    uuid: str
    live: bool  # rkt reports the pod and it has not finished


def _task_logs_dirs(task_root: Path, namespace: str, name: str) -> list[Path]:
    """The logs directories of every task directory named after NAMESPACE/NAME."""
    out = []
    prefix = f"{name}-"
    try:
        entries = sorted((task_root / namespace).iterdir())
    except OSError:
        return []
    for entry in entries:
        uid = entry.name.removeprefix(prefix)
        if entry.name.startswith(prefix) and _UID.fullmatch(uid):
            out.append(files.logs_dir(entry))
    return out


async def find(executor: Executor, namespace: str, name: str) -> Target | None:
    """The pod whose output to show, or None when the task has none on this node."""
    try:
        mine = await executor.pods_named(namespace, name)
    except errors.RktError as exc:
        log.warning("rkt cannot list the pods (%s); looking at the task directory only", exc)
        mine = []
    if mine and mine[0].identity is not None:
        pod = mine[0]
        root = TaskDirs.for_task(executor.settings.task_root, mine[0].identity).root
        return Target(files.logs_dir(root), pod.uuid, live=not pod.finished)
    found = logread.newest_pod(_task_logs_dirs(executor.settings.task_root, namespace, name))
    return None if found is None else Target(found[0], found[1], live=False)


async def show(
    executor: Executor,
    ref: str,
    *,
    stream: str = "stdout",
    tail: int | None = None,
    follow: bool = False,
    write: Write,
) -> int:
    """Print the task's log through ``write``; the command's exit code. ``ValueError`` for
    a bad reference or tail."""
    namespace, name = refs.parse_task_ref(ref)
    if tail is not None and tail < 0:
        raise ValueError(f"--tail must not be negative: {tail}")
    target = await find(executor, namespace, name)
    if target is None:
        log.error("no pod of task %s/%s on this node", namespace, name)
        return 1
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    follower = logread.Follower(target.logs_dir, target.uuid, stream)
    try:
        pieces = follower.snapshot()
    except OSError as exc:
        log.error("cannot read the log files of pod %s: %s", target.uuid, exc)
        return 1
    if tail is None:
        for chunk in logread.chunks(pieces):
            write(decoder.decode(chunk))
    else:
        write(decoder.decode(logread.tail(pieces, tail)))
    polls = 0
    while follow and target.live:
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
        polls += 1
        done = False
        if polls % _STATE_CHECK_POLLS == 0:
            observed = await executor.observe(target.uuid)
            done = observed is None or observed.finished
        for chunk in logread.chunks(follower.poll()):
            write(decoder.decode(chunk))
        if done:
            break
    write(decoder.decode(b"", final=True))
    return 0


async def run(
    settings: Settings,
    ref: str,
    *,
    stream: str = "stdout",
    tail: int | None = None,
    follow: bool = False,
    write: Write,
) -> int:
    """``rkt-operator logs`` with the agent's settings (task root, rkt)."""
    executor = Executor(settings=settings, rkt=RktCli(settings))
    return await show(executor, ref, stream=stream, tail=tail, follow=follow, write=write)
