"""What the agent exports: counts kept as it works (rkt command durations, reconcile errors)
and a sample of the node taken at scrape time (its pods by rkt state; CPU, memory and process
count of each running task's pod; the rkt fingerprint).

The node sample costs one ``rkt list`` plus one ``rkt status`` per running pod, so it is
taken only when scraped, shared by concurrent scrapes and reused for ``max_age`` seconds;
the per-pod work runs ``concurrency`` at a time, the whole sample within ``timeout``. The
resync loop never pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rkt_operator import __version__, errors
from rkt_operator.executor.service import Executor, PodStats
from rkt_operator.fingerprint import ATTR_APPC_VERSION, ATTR_RKT_VERSION, Fingerprint
from rkt_operator.metrics.exposition import Counter, Family, Histogram, render
from rkt_operator.rkt.pods import POD_STATES
from rkt_operator.rkt.types import PodObservation

log = logging.getLogger(__name__)

SAMPLE_MAX_AGE_SECONDS = 5.0
SAMPLE_CONCURRENCY = 4
SAMPLE_TIMEOUT_SECONDS = 30.0
TASK_LABELS = ("namespace", "name", "uuid")


class AgentMetrics:
    """Counters and histograms the agent updates as it works (no I/O)."""

    def __init__(self) -> None:
        self.rkt_commands = Histogram(
            "rktoperator_rkt_command_duration_seconds",
            "Wall time of rkt commands run by the agent, by subcommand (timeouts included).",
            labels=("subcommand",),
        )
        self.reconcile_errors = Counter(
            "rktoperator_reconcile_errors_total",
            "Reconcile passes (create, update, resync, delete) that ended in an error, by reason.",
            labels=("reason",),
        )

    def observe_rkt(self, subcommand: str, seconds: float) -> None:
        """The ``RktCli`` observer."""
        self.rkt_commands.observe(seconds, subcommand=subcommand or "unknown")

    def count_error(self, reason: str) -> None:
        self.reconcile_errors.inc(reason=reason)

    def families(self) -> list[Family]:
        build = Family("rktoperator_build_info", "The agent's version (always 1).", "gauge").add(
            1, version=__version__
        )
        return [build, self.rkt_commands.family(), self.reconcile_errors.family()]


@dataclass(frozen=True)
class NodeSample:
    """This node's pods of RktTasks as seen at one scrape; ``ok`` is False if rkt failed."""

    ok: bool
    pods: tuple[PodObservation, ...] = ()
    stats: Mapping[str, PodStats] = field(default_factory=dict)


class PodSampler:
    """Takes (and briefly caches) the ``NodeSample``; see the module docstring."""

    def __init__(
        self,
        executor: Executor,
        *,
        max_age: float = SAMPLE_MAX_AGE_SECONDS,
        concurrency: int = SAMPLE_CONCURRENCY,
        timeout: float = SAMPLE_TIMEOUT_SECONDS,
    ) -> None:
        self._executor = executor
        self._max_age = max_age
        self._concurrency = concurrency
        self._timeout = timeout
        self._last: tuple[float, NodeSample] | None = None
        self._inflight: asyncio.Task[NodeSample] | None = None

    async def sample(self) -> NodeSample:
        if self._last is not None and time.monotonic() - self._last[0] < self._max_age:
            return self._last[1]
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._take(), name="metrics-sample")
        return await asyncio.shield(self._inflight)

    async def close(self) -> None:
        """Cancel a sample in flight (agent shutdown)."""
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _take(self) -> NodeSample:
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(self._collect(), self._timeout)
        except errors.RktError as exc:
            log.warning("metrics: cannot list pods: %s", exc)
            result = NodeSample(ok=False)
        except TimeoutError:
            log.warning("metrics: node sample took longer than %gs", self._timeout)
            result = NodeSample(ok=False)
        self._last = (started, result)
        return result

    async def _collect(self) -> NodeSample:
        pods = tuple(await self._executor.list_pods())
        gate = asyncio.Semaphore(self._concurrency)

        async def one(uuid: str) -> tuple[str, PodStats | None]:
            async with gate:
                try:
                    return uuid, await self._executor.stats(uuid)
                except errors.RktError as exc:  # one pod's trouble must not hide the others
                    log.debug("metrics: no stats for pod %s: %s", uuid, exc)
                    return uuid, None

        found = await asyncio.gather(*(one(p.uuid) for p in pods if p.running))
        return NodeSample(ok=True, pods=pods, stats={u: s for u, s in found if s is not None})


def pod_families(sample: NodeSample) -> list[Family]:
    """The node sample as metric families (one series set per running pod of a task)."""
    success = Family(
        "rktoperator_pod_collection_success",
        "1 if the last node sample (rkt list, rkt status) succeeded, else 0.",
        "gauge",
    ).add(1 if sample.ok else 0)
    states = dict.fromkeys(sorted(POD_STATES), 0)
    for pod in sample.pods:
        states[pod.state] = states.get(pod.state, 0) + 1
    by_state = Family("rktoperator_pods", "Pods of RktTasks on this node by rkt state.", "gauge")
    for state, count in states.items():
        by_state.add(count, state=state)
    cpu = Family(
        "rktoperator_task_cpu_seconds_total",
        "User and system CPU time of the task's pod process tree (reaped children included).",
        "counter",
    )
    rss = Family(
        "rktoperator_task_memory_rss_bytes",
        "Resident memory of the task's pod process tree.",
        "gauge",
    )
    procs = Family("rktoperator_task_processes", "Processes in the task's pod tree.", "gauge")
    for pod in sample.pods:
        stats = sample.stats.get(pod.uuid)
        if stats is None or pod.identity is None:
            continue
        labels = {"namespace": pod.identity.namespace, "name": pod.identity.name, "uuid": pod.uuid}
        cpu.add(stats.cpu_seconds, **labels)
        rss.add(stats.rss_bytes, **labels)
        procs.add(stats.processes, **labels)
    return [success, by_state, cpu, rss, procs]


def fingerprint_families(result: Fingerprint | None) -> list[Family]:
    """rkt's versions as an info metric and whether the node can run tasks; nothing before
    the first fingerprint."""
    if result is None:
        return []
    healthy = Family(
        "rktoperator_rkt_healthy", "1 if this node's rkt is usable (fingerprint).", "gauge"
    ).add(1 if result.healthy else 0)
    info = Family("rktoperator_rkt_info", "The node's rkt and appc versions (always 1).", "gauge")
    version = result.attributes.get(ATTR_RKT_VERSION)
    if version is not None:
        appc = result.attributes.get(ATTR_APPC_VERSION, "")
        info.add(1, version=version, appc_version=appc)
    return [healthy, info]


class Exporter:
    """Everything the endpoint serves, rendered fresh (within the sampler's cache) per scrape."""

    def __init__(
        self,
        metrics: AgentMetrics,
        sampler: PodSampler,
        *,
        fingerprint: Callable[[], Fingerprint | None] = lambda: None,
    ) -> None:
        self.metrics = metrics
        self.sampler = sampler
        self._fingerprint = fingerprint

    async def render(self) -> str:
        sample = await self.sampler.sample()
        families: Iterable[Family] = [
            *self.metrics.families(),
            *fingerprint_families(self._fingerprint()),
            *pod_families(sample),
        ]
        return render(families)
