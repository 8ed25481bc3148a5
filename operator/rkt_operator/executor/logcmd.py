"""``rkt-operator logs NAMESPACE/NAME``: a task's pod output, read on the node that runs it
(on a cluster: ``kubectl -n rkt-operator exec <agent pod on that node> -- rkt-operator logs
ns/task``).

The pod is the task's newest pod that rkt reports (found by the identity annotations every
pod carries); when rkt knows none any more, the most recently written log files of the
task's directory. Prints the whole stream (stdout, or stderr), or its last lines, and with
``follow`` goes on printing what the pod writes until it exits (or until ``stop`` says the
reader is gone).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rkt_operator import errors
from rkt_operator.executor import files, logread
from rkt_operator.executor.service import Executor
from rkt_operator.model import refs
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import PodObservation, TaskDirs, TaskIdentity
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.25
_STATE_CHECK_POLLS = 8  # follow: ask rkt whether the pod still runs every 8 polls (2 s)
_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"
)
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Write = Callable[[str], object]


@dataclass(frozen=True)
class Target:
    logs_dir: Path
    uuid: str
    live: bool  # rkt reports the pod and it has not finished


def _task_logs_dirs(task_root: Path, namespace: str, name: str, uid: str | None) -> list[Path]:
    """The logs directories of every task directory named after NAMESPACE/NAME (of the
    object ``uid`` only, when given)."""
    out = []
    prefix = f"{name}-"
    try:
        entries = sorted((task_root / namespace).iterdir())
    except OSError:
        return []
    for entry in entries:
        found = entry.name.removeprefix(prefix)
        if entry.name.startswith(prefix) and _UID.fullmatch(found) and uid in (None, found):
            out.append(files.logs_dir(entry))
    return out


async def _pods(
    executor: Executor, namespace: str, name: str, uid: str | None
) -> list[tuple[PodObservation, TaskIdentity]]:
    """The task's pods rkt knows (of object ``uid`` only, when given), newest first."""
    try:
        mine = await executor.pods_named(namespace, name)
    except errors.RktError as exc:
        log.warning("rkt cannot list the pods (%s); looking at the task directory only", exc)
        return []
    return [(p, p.identity) for p in mine if p.identity and uid in (None, p.identity.uid)]


def _target(executor: Executor, pod: tuple[PodObservation, TaskIdentity]) -> Target:
    root = TaskDirs.for_task(executor.settings.task_root, pod[1]).root
    return Target(files.logs_dir(root), pod[0].uuid, live=not pod[0].finished)


async def find(
    executor: Executor, namespace: str, name: str, *, uid: str | None = None, previous: bool = False
) -> Target | None:
    """The pod whose output to show, or None when the task has none on this node: its newest
    pod, or with ``previous`` the one before it. ``uid`` confines the search to that object
    (a task deleted and created again under the same name is another object)."""
    mine = await _pods(executor, namespace, name, uid)
    dirs = _task_logs_dirs(executor.settings.task_root, namespace, name, uid)
    by_files = logread.pods_by_recency(dirs)
    if not previous:
        if mine:
            return _target(executor, mine[0])
        return None if not by_files else Target(by_files[0][0], by_files[0][1], live=False)
    if len(mine) >= 2:
        return _target(executor, mine[1])
    current = mine[0][0].uuid if mine else (by_files[0][1] if by_files else None)
    older = [found for found in by_files if found[1] != current]
    return None if not older else Target(older[0][0], older[0][1], live=False)


def parse_since(text: str) -> float:
    """A duration as kubectl writes it (``30s``, ``5m``, ``1h30m``, ``2h``) -> seconds;
    ``ValueError`` for anything else."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"--since wants a duration such as 30s, 5m or 1h30m, got {text!r}")
    hours, minutes, seconds = (float(match[k] or 0) for k in ("h", "m", "s"))
    return hours * 3600 + minutes * 60 + seconds


async def show(
    executor: Executor,
    ref: str,
    *,
    stream: str = "stdout",
    tail: int | None = None,
    follow: bool = False,
    previous: bool = False,
    since: float | None = None,
    uid: str | None = None,
    write: Write,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Print the task's log through ``write``; the command's exit code. ``ValueError`` for
    a bad reference or tail. ``since`` (seconds) leaves out the files not written to for
    that long, and the lines real rkt's console stamps as older (``logread.since_lines``);
    ``uid`` refuses pods of any other object of that name. ``follow`` ends when
    the pod does, or as soon as ``stop()`` is true (checked at each poll)."""
    namespace, name = refs.parse_task_ref(ref)
    if tail is not None and tail < 0:
        raise ValueError(f"--tail must not be negative: {tail}")
    if since is not None and since < 0:
        raise ValueError(f"--since must not be negative: {since}")
    target = await find(executor, namespace, name, uid=uid, previous=previous)
    if target is None:
        which = "previous pod" if previous else "pod"
        of = f" (uid {uid})" if uid else ""
        log.error("no %s of task %s/%s%s on this node", which, namespace, name, of)
        return 1
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    follower = logread.Follower(target.logs_dir, target.uuid, stream)
    try:
        pieces = follower.snapshot()
        if since is not None:
            now, uptime = time.time(), time.monotonic()
            pieces = logread.since_lines(pieces, now - since, now=now, uptime=uptime)
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
        if stop is not None and stop():
            log.info("the reader is gone; no longer following pod %s", target.uuid)
            break
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
    previous: bool = False,
    since: float | None = None,
    uid: str | None = None,
    write: Write,
    stop: Callable[[], bool] | None = None,
) -> int:
    """``rkt-operator logs`` with the agent's settings (task root, rkt)."""
    executor = Executor(settings=settings, rkt=RktCli(settings))
    return await show(
        executor,
        ref,
        stream=stream,
        tail=tail,
        follow=follow,
        previous=previous,
        since=since,
        uid=uid,
        write=write,
        stop=stop,
    )
