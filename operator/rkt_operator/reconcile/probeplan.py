"""Pure bookkeeping of one probe of one pod (the kubelet's prober worker, minus the timer).

A :class:`Track` holds the probe's definition, when it is next due, the consecutive
successes and failures so far and the current :class:`Verdict`. ``record`` folds one
:class:`Result` in: ``successThreshold`` consecutive successes make the verdict a success,
``failureThreshold`` consecutive failures a failure. A readiness probe starts without a
verdict (not ready), a liveness probe starts as a success. The verdict's ``detail`` (the
output of the run that changed it) is kept until the verdict changes again, so a status
built from it is stable and written once per change.

No clock and no processes: callers pass ``now`` and the results of the runs they made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rkt_operator.model.probes import Probe

# How much of a probe's output (the end of it) a verdict keeps for messages.
DETAIL_CHARS = 256


class Kind(enum.StrEnum):
    READINESS = "readiness"
    LIVENESS = "liveness"


@dataclass(frozen=True)
class Result:
    """The outcome of one run of the probe's command."""

    success: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    """What the probe says about the pod: ``ok`` None while no verdict was reached."""

    ok: bool | None
    detail: str = ""
    failures: int = 0  # consecutive failures that led to a failed verdict


@dataclass(frozen=True)
class Track:
    kind: Kind
    probe: Probe
    next_due: datetime
    successes: int = 0
    failures: int = 0
    verdict: Verdict = Verdict(None)


def start(kind: Kind, probe: Probe, started_at: datetime) -> Track:
    """A new track for a pod that started at ``started_at``."""
    first = started_at + timedelta(seconds=probe.initial_delay_seconds)
    verdict = Verdict(True) if kind is Kind.LIVENESS else Verdict(None)
    return Track(kind=kind, probe=probe, next_due=first, verdict=verdict)


def retune(track: Track, probe: Probe, now: datetime) -> Track:
    """The probe's definition changed while the pod runs: keep the verdict, count afresh
    and run no later than the new period says."""
    if probe == track.probe:
        return track
    due = min(track.next_due, now + timedelta(seconds=probe.period_seconds))
    return replace(track, probe=probe, next_due=due, successes=0, failures=0)


def due(track: Track, now: datetime) -> bool:
    return now >= track.next_due


def skip(track: Track, now: datetime) -> Track:
    """No result this time (the run could not be made): try again one period later."""
    return replace(track, next_due=now + timedelta(seconds=track.probe.period_seconds))


def record(track: Track, result: Result, now: datetime) -> Track:
    """Fold the result of a run made at ``now`` into the track."""
    probe = track.probe
    track = skip(track, now)
    if result.success:
        successes = track.successes + 1
        verdict = track.verdict
        if successes >= probe.success_threshold and verdict.ok is not True:
            verdict = Verdict(True, result.detail)
        return replace(track, successes=successes, failures=0, verdict=verdict)
    failures = track.failures + 1
    verdict = track.verdict
    if failures >= probe.failure_threshold and verdict.ok is not False:
        verdict = Verdict(False, result.detail, failures)
    return replace(track, successes=0, failures=failures, verdict=verdict)


def describe_run(exit_code: int, output: str) -> Result:
    """The result of a command that ran to its end: exit code 0 is a success. The detail
    is the exit code and the end of the output on one line."""
    text = " ".join(output.split())
    if len(text) > DETAIL_CHARS:
        text = "..." + text[-(DETAIL_CHARS - 3) :]
    detail = f"exit code {exit_code}" + (f": {text}" if text else "")
    return Result(exit_code == 0, detail)


def timed_out(timeout_seconds: float) -> Result:
    return Result(False, f"timed out after {timeout_seconds:g}s")
