"""Figures of one benchmark phase and how they are printed (a text table and JSON).

Owns the arithmetic (percentiles, throughput, writes per task) and the presentation; it
measures nothing itself. Every ratio is ``agent / floor`` of the same row, so above 1 means
the agent needs more (time, writes, memory) or, for throughput, gets more done.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apimetrics import WriteKey

MIB = 1024 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks
    (NumPy's default); ``nan`` for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class PhaseResult:
    """What one controller (the agent or a floor) achieved on its own batch of tasks."""

    name: str
    tasks: int
    latencies: list[float]  # seconds from apply (ADDED seen) to Running, per task that ran
    wall_seconds: float  # from just before `kubectl apply` to the last task Running
    writes: dict[WriteKey, int]  # API server's write counter delta over the phase
    bench_writes: int  # of those, the creates the benchmark itself sent
    peak_rss: int  # bytes, the controller process alone
    pods_pss: int | None = None  # bytes, PSS of the rkt/pod processes, batch Running (agent)
    peak_rss_pods: int | None = None  # bytes, their summed RSS at its peak (overcounts sharing)
    cpu_seconds: float | None = None  # controller + reaped children, over the batch
    cpu_own_seconds: float | None = None  # the controller process alone, over the batch
    rkt_calls: dict[str, int] | None = None  # rkt invocations over the batch, by subcommand
    notes: list[str] = field(default_factory=list)

    @property
    def running(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        """Tasks brought to Running per second of the phase's wall time."""
        return self.running / self.wall_seconds if self.wall_seconds > 0 else math.nan

    @property
    def controller_writes(self) -> int:
        """Writes not sent by the benchmark: the controller's (finalizer, status, events)."""
        return sum(self.writes.values()) - self.bench_writes

    @property
    def writes_per_task(self) -> float:
        return self.controller_writes / self.tasks if self.tasks else math.nan

    @property
    def event_writes(self) -> int:
        """Writes to events (any group): what the controller posted about the tasks."""
        return sum(v for k, v in self.writes.items() if k.resource == "events")

    @property
    def object_writes(self) -> int:
        """Writes to the RktTasks themselves (status subresource included), minus the
        benchmark's own creates: finalizers, annotations, status patches."""
        return self.controller_writes - self.event_writes

    def per_task(self, value: float | None) -> float | None:
        if value is None or not self.tasks:
            return None
        return value / self.tasks

    @property
    def rkt_calls_per_task(self) -> float | None:
        if self.rkt_calls is None:
            return None
        return self.per_task(float(sum(self.rkt_calls.values())))

    def figures(self) -> dict[str, float | None]:
        """The comparable figures, in table order (``None`` when not measured)."""
        return {
            "latency_p50_s": percentile(self.latencies, 50),
            "latency_p95_s": percentile(self.latencies, 95),
            "latency_p99_s": percentile(self.latencies, 99),
            "throughput_tasks_per_s": self.throughput,
            "api_writes_per_task": self.writes_per_task,
            "object_writes_per_task": self.per_task(float(self.object_writes)),
            "event_writes_per_task": self.per_task(float(self.event_writes)),
            "rkt_calls_per_task": self.rkt_calls_per_task,
            "peak_rss_mib": self.peak_rss / MIB,
            "pods_pss_mib": None if self.pods_pss is None else self.pods_pss / MIB,
            "cpu_seconds": self.cpu_seconds,
            "cpu_own_ms_per_task": None
            if self.cpu_own_seconds is None
            else 1000.0 * self.cpu_own_seconds / self.tasks,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": self.tasks,
            "running": self.running,
            "wall_seconds": self.wall_seconds,
            **self.figures(),
            "peak_rss_pods_sum_mib": None
            if self.peak_rss_pods is None
            else self.peak_rss_pods / MIB,
            "controller_writes": self.controller_writes,
            "bench_writes": self.bench_writes,
            "writes": {str(k): v for k, v in self.writes.items()},
            "rkt_calls": self.rkt_calls,
            "latencies_s": sorted(self.latencies),
            "notes": self.notes,
        }


_ROWS = {
    "latency_p50_s": ("apply->Running p50", "s", 3),
    "latency_p95_s": ("apply->Running p95", "s", 3),
    "latency_p99_s": ("apply->Running p99", "s", 3),
    "throughput_tasks_per_s": ("throughput", "tasks/s", 1),
    "api_writes_per_task": ("API writes per task", "", 2),
    "object_writes_per_task": ("  to the object", "", 2),
    "event_writes_per_task": ("  events", "", 2),
    "rkt_calls_per_task": ("rkt invocations per task", "", 2),
    "peak_rss_mib": ("peak RSS, controller", "MiB", 1),
    "pods_pss_mib": ("rkt pods, PSS at end", "MiB", 1),
    "cpu_seconds": ("CPU, controller + rkt cmds", "s", 1),
    "cpu_own_ms_per_task": ("CPU per task, own process", "ms", 1),
}


def _cell(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def ratio(agent: float | None, floor: float | None) -> float | None:
    if agent is None or floor is None or math.isnan(agent) or math.isnan(floor) or floor == 0:
        return None
    return agent / floor


def composed_cpu_floor(floors: Sequence[PhaseResult]) -> tuple[float, float] | None:
    """The own CPU per start of a kopf controller that does the agent's rkt work: the kopf
    floor's plus what the rkt work alone adds to a controller (the same-rkt-work floor's
    minus the client floor's, the two controllers being alike but for the rkt work).
    Returns (kopf floor, composed) in ms, or None without the three floors."""
    by_name = {f.name: f.figures().get("cpu_own_ms_per_task") for f in floors}
    kopf, rkt, bare = (
        by_name.get("floor-kopf"),
        by_name.get("floor-rkt"),
        by_name.get("floor-client"),
    )
    if kopf is None or rkt is None or bare is None:
        return None
    return kopf, kopf + max(0.0, rkt - bare)


def render_text(agent: PhaseResult, floors: Sequence[PhaseResult], header: str) -> str:
    """The human table: one column per phase, then one ``agent/<floor>`` column per floor."""
    phases = [agent, *floors]
    names = [p.name for p in phases] + [f"{agent.name}/{f.name}" for f in floors]
    width = max(12, *(len(n) + 2 for n in names))
    lines = [header, ""]
    lines.append(f"{'':28}" + "".join(f"{n:>{width}}" for n in names))
    running = [f"{p.running}/{p.tasks}" for p in phases]
    lines.append(f"{'tasks Running':28}" + "".join(f"{c:>{width}}" for c in running))
    figures = [p.figures() for p in phases]
    for key, (label, unit, digits) in _ROWS.items():
        title = f"{label} ({unit})" if unit else label
        cells = [_cell(f[key], digits) for f in figures]
        cells += [_cell(ratio(figures[0][key], f[key]), 2) for f in figures[1:]]
        lines.append(f"{title:28}" + "".join(f"{c:>{width}}" for c in cells))
    lines.append("")
    for p in phases:
        parts = ", ".join(f"{k} {v}" for k, v in p.writes.items()) or "none"
        lines.append(
            f"writes during '{p.name}' (benchmark's own creates: {p.bench_writes}): {parts}"
        )
        if p.rkt_calls is not None:
            calls = ", ".join(
                f"{k} {v / p.tasks:.2f}" for k, v in p.rkt_calls.items()
            )  # fmt: skip
            lines.append(f"rkt invocations per task during '{p.name}': {calls or 'none'}")
        lines.extend(f"note ({p.name}): {n}" for n in p.notes)
    composed = composed_cpu_floor(floors)
    own = agent.figures().get("cpu_own_ms_per_task")
    if composed is not None and own is not None:
        kopf, floor = composed
        lines.append(
            f"own CPU per start: kopf floor + the rkt work alone (floor-rkt - floor-client) = "
            f"{floor:.1f} ms ({_cell(ratio(floor, kopf), 2)}x the kopf floor); "
            f"{agent.name} / that = {_cell(ratio(own, floor), 2)}"
        )
    return "\n".join(lines)


def render_json(agent: PhaseResult, floors: Sequence[PhaseResult], meta: dict[str, Any]) -> str:
    figures = agent.figures()
    ratios = {f.name: {k: ratio(figures[k], v) for k, v in f.figures().items()} for f in floors}
    document = {
        **meta,
        "phases": [p.as_json() for p in (agent, *floors)],
        "ratios": ratios,
    }
    return json.dumps(_finite(document), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with every NaN/infinity replaced by ``None`` (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
