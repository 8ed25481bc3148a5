"""Waiting for a launched pod to run, and network discovery (Nomad §3.7, with its fix).

Polls ``rkt status --format=json`` with jittered, growing delays until the pod runs and,
when an IP is wanted, one of its networks has a global-unicast address; then, if port
names were asked for, reads the port map from ``rkt cat-manifest``. The IP returned is that
of the selected network (Nomad returned ``networks[0]`` even when it had skipped it).

**Wake-up files.** Each ``rkt status`` is a Go process start (about 60-140 ms of a core on
the reference host), and on real rkt the pod shows ``running`` a moment before its IP: rkt
moves the pod to ``pods/run/<uuid>`` first and writes ``net-info.json`` there once
contained networking is up (stage1's network setup; ``rkt status`` reads its networks from
that file). A blind schedule (at once, then 0.1, 0.2, 0.4 ... s) spent 2.3 status calls
per start in the real-rkt benchmark. So before each status call the waiter watches, by
``stat`` every ``SIGNAL_POLL`` seconds and with no process started, the files whose
appearance makes a status call worth it (``wake_paths``): ``pods/run/<uuid>/net-info.json``
when an IP is wanted, else ``pods/run/<uuid>``, and the supervisor's exit record (a launch
that failed or a pod that ended). A file is only a wake-up: it is never read, the state
and the IP still come from ``rkt status``. The wait before the n-th call never exceeds
the n-th delay of the backoff schedule (``plan_wait``), so when no file shows (a layout
rkt does not follow, a pod that fails before its network is up) the calls come on that
schedule, without its immediate first call: a failure is noticed no later than before
(the one the immediate call would have seen at once is seen at the first poll, through
the exit record). Once a status call made with a wake-up file present did not end the
wait (an address discovery does not take, say), the plain backoff follows: a file that
stays does not make status calls back to back. Without wake-up files (``wake_on`` empty)
the schedule is the plain one, first call at once.

A pod that finishes meanwhile ends the wait without error (the caller reports the exit).
Manifest problems end discovery at once; otherwise failures are retried until the
deadline, which raises ``NetworkDiscoveryError("timed out, last error: ...")``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rkt_operator import errors
from rkt_operator.executor import files
from rkt_operator.rkt import parse, pods
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.pods import PodStatus

log = logging.getLogger(__name__)

FIRST_DELAY = 0.1
MAX_DELAY = 1.0  # Nomad slept 0.9-1 s between attempts
SIGNAL_POLL = 0.025  # seconds between stat() calls while watching the wake-up files


@dataclass(frozen=True)
class Discovered:
    status: PodStatus
    ip: str | None = None
    port_map: dict[str, int] = field(default_factory=dict)


def next_delay(attempt: int) -> float:
    """Exponential from 0.1 s up to 1 s, with up to 10 % jitter downwards."""
    base = min(MAX_DELAY, FIRST_DELAY * (2.0 ** min(attempt, 16)))
    return base * random.uniform(0.9, 1.0)  # noqa: S311 - jitter, not cryptography


def ready_signal(rkt_dir: Path, uuid: str, *, want_ip: bool) -> Path:
    """The file rkt makes when a status call can show what discovery waits for: the pod's
    ``net-info.json`` (contained networking is up) or, without an IP to wait for, the pod's
    directory under ``pods/run`` (run-prepared took the pod)."""
    run = rkt_dir / "pods" / "run" / uuid
    return run / "net-info.json" if want_ip else run


def wake_paths(
    rkt_dir: Path, uuid: str, *, want_ip: bool, launch_root: Path | None = None
) -> tuple[Path, ...]:
    """The wake-up files of a pod: its ready signal, and the exit record its supervisor
    writes under ``launch_root`` (the task directory) when rkt run-prepared ends."""
    ready = ready_signal(rkt_dir, uuid, want_ip=want_ip)
    return (ready,) if launch_root is None else (ready, files.exit_file(launch_root, uuid))


@dataclass(frozen=True)
class Wait:
    """What to do before the next ``rkt status``: wait ``seconds``, ending early when a
    wake-up file exists if ``watch``."""

    seconds: float
    watch: bool


def plan_wait(calls: int, remaining: float, *, watch: bool) -> Wait:
    """The wait before status call number ``calls`` (0 for the first) with ``remaining``
    seconds to the deadline. Watching: at most the backoff delay ``next_delay(calls)``, so
    the n-th call comes no later than the plain schedule's (n+1)-th. Not watching: the
    plain schedule, first call at once, then ``next_delay(calls - 1)``."""
    if watch:
        return Wait(seconds=max(0.0, min(remaining, next_delay(calls))), watch=True)
    delay = 0.0 if calls == 0 else next_delay(calls - 1)
    return Wait(seconds=max(0.0, min(remaining, delay)), watch=False)


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True


async def wait_for_any(
    paths: Sequence[Path], seconds: float, *, interval: float = SIGNAL_POLL
) -> bool:
    """Poll (``stat`` only, never read) until one of ``paths`` exists: True; or until
    ``seconds`` have passed: False. Looks at least once, even with ``seconds`` 0."""
    end = time.monotonic() + seconds
    while True:
        if any(_exists(path) for path in paths):
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(interval, left))


def _describe(error: errors.RktError) -> str:
    text = str(error)
    if error.stderr:
        stderr = error.stderr.strip()
        quoted = repr(stderr[:80] + ("..." if len(stderr) > 80 else ""))
        text = f"{text}. stderr: {quoted}"
    return f"getting status failed: {text}"


async def discover(
    rkt: RktCli,
    uuid: str,
    *,
    want_ip: bool,
    port_names: Sequence[str],
    deadline_seconds: float,
    check: Callable[[PodStatus], Awaitable[None]] | None = None,
    wake_on: Sequence[Path] = (),
) -> Discovered:
    """Wait until ``uuid`` runs (and, if ``want_ip``, has an IP). ``check`` sees every
    status and may raise to abort (the executor uses it to spot a launch that failed).
    ``wake_on``: the pod's wake-up files (``wake_paths``; see the module's docstring)."""
    deadline = time.monotonic() + deadline_seconds
    last_error = "pod not observed yet"
    watch = bool(wake_on)
    calls = 0
    while True:
        wait = plan_wait(calls, deadline - time.monotonic(), watch=watch)
        woken = False
        if wait.watch:
            woken = await wait_for_any(wake_on, wait.seconds)
        elif wait.seconds > 0:
            await asyncio.sleep(wait.seconds)
        log.debug(
            "discovery wait uuid=%s call=%d limit=%.3f watched=%s woken=%s",
            uuid,
            calls,
            wait.seconds,
            wait.watch,
            woken,
        )
        calls += 1
        try:
            status = await rkt.status(uuid)
        except errors.PodNotFound:
            raise
        except errors.RktError as exc:
            last_error = _describe(exc)
        else:
            if check is not None:
                await check(status)
            if status.finished:
                return Discovered(status=status)
            if status.state == "running":
                if not want_ip:
                    return Discovered(status=status)
                ip = pods.pod_ip(status)
                if ip is not None:
                    return Discovered(
                        status=status, ip=ip, port_map=await _ports(rkt, uuid, port_names)
                    )
                last_error = (
                    "no networks found"
                    if not status.networks
                    else f"no good driver networks out of {len(status.networks)} returned"
                )
            else:
                last_error = f"pod is {status.state}"
        if woken:
            watch = False  # the file was there and did not help: plain backoff from now on
        if deadline - time.monotonic() <= 0:
            raise errors.NetworkDiscoveryError(f"timed out, last error: {last_error}")


async def _ports(rkt: RktCli, uuid: str, names: Sequence[str]) -> dict[str, int]:
    if not names:
        return {}
    try:
        manifest = await rkt.cat_manifest(uuid)
    except errors.RktError as exc:
        raise errors.NetworkDiscoveryError(f"could not get pod manifest: {exc}") from exc
    try:
        return parse.port_map_from_manifest(manifest, names)
    except errors.RktOutputError as exc:
        raise errors.NetworkDiscoveryError(
            f"could not create manifest-based portmap: {exc}"
        ) from exc
