"""Waiting for a launched pod to run, and network discovery (Nomad §3.7, with its fix).

Polls ``rkt status --format=json`` with jittered, growing delays until the pod runs and,
when an IP is wanted, one of its networks has a global-unicast address; then, if port
names were asked for, reads the port map from ``rkt cat-manifest``. The IP returned is that
of the selected network (Nomad returned ``networks[0]`` even when it had skipped it).

A pod that finishes meanwhile ends the wait without error (the caller reports the exit).
Manifest problems end discovery at once; otherwise failures are retried until the
deadline, which raises ``NetworkDiscoveryError("timed out, last error: ...")``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from rkt_operator import errors
from rkt_operator.rkt import parse, pods
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.pods import PodStatus

log = logging.getLogger(__name__)

FIRST_DELAY = 0.1
MAX_DELAY = 1.0  # Nomad slept 0.9-1 s between attempts


@dataclass(frozen=True)
class Discovered:
    status: PodStatus
    ip: str | None = None
    port_map: dict[str, int] = field(default_factory=dict)


def next_delay(attempt: int) -> float:
    """Exponential from 0.1 s up to 1 s, with up to 10 % jitter downwards."""
    base = min(MAX_DELAY, FIRST_DELAY * (2.0 ** min(attempt, 16)))
    return base * random.uniform(0.9, 1.0)  # noqa: S311 - jitter, not cryptography


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
) -> Discovered:
    """Wait until ``uuid`` runs (and, if ``want_ip``, has an IP). ``check`` sees every
    status and may raise to abort (the executor uses it to spot a launch that failed)."""
    deadline = time.monotonic() + deadline_seconds
    last_error = "pod not observed yet"
    attempt = 0
    while True:
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
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.NetworkDiscoveryError(f"timed out, last error: {last_error}")
        await asyncio.sleep(min(remaining, next_delay(attempt)))
        attempt += 1


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
