"""The agent's metrics against a real ``Executor`` on ``rkt-sim``: the node sample finds a
running pod's CPU and memory, is shared within its age and fails soft; ``RktCli`` reports
every command to its observer; the HTTP endpoint serves the exposition (read back with the
reference parser); a port already taken does not stop the agent."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from rkt_operator.executor.service import Executor
from rkt_operator.metrics import server as server_module
from rkt_operator.metrics.collector import AgentMetrics, Exporter, PodSampler
from rkt_operator.metrics.exposition import CONTENT_TYPE
from rkt_operator.metrics.server import MetricsServer
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import identity, make_plan, make_settings


async def test_sample_has_the_running_pods_cpu_and_rss(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await executor.ensure_started(make_plan(settings, identity("web"), images["sleeper"]))
    sampler = PodSampler(executor, max_age=3600)
    sample = await sampler.sample()
    assert sample.ok
    assert [p.uuid for p in sample.pods] == [pod.uuid]
    stats = sample.stats[pod.uuid]
    assert stats.rss_bytes > 0
    assert stats.processes >= 2
    assert stats.cpu_seconds > 0
    # Within max_age the same sample is served again, without asking rkt.
    assert await sampler.sample() is sample
    await executor.stop(pod.uuid, kill_timeout=10)
    fresh = await PodSampler(executor, max_age=0).sample()
    assert fresh.ok
    assert [p.state for p in fresh.pods] == ["exited"]
    assert fresh.stats == {}


async def test_concurrent_scrapes_share_one_sample(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    await executor.ensure_started(make_plan(settings, identity("web"), images["sleeper"]))
    sampler = PodSampler(executor, max_age=3600)
    first, second = await asyncio.gather(sampler.sample(), sampler.sample())
    assert first is second


async def test_a_broken_rkt_gives_a_failed_sample(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rkt_path=str(tmp_path / "no-such-rkt"))
    executor = Executor(settings=settings, rkt=RktCli(settings))
    sample = await PodSampler(executor).sample()
    assert not sample.ok
    assert sample.pods == ()


async def test_rkt_cli_reports_each_command_to_its_observer(settings: Settings) -> None:
    metrics = AgentMetrics()
    rkt = RktCli(settings, observer=metrics.observe_rkt)
    await rkt.list()
    await rkt.list()
    await rkt.version()
    assert metrics.rkt_commands.count(subcommand="list") == 2
    assert metrics.rkt_commands.count(subcommand="version") == 1


def _get(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        return response.headers["Content-Type"], response.read().decode()


async def test_endpoint_serves_the_exposition(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await executor.ensure_started(make_plan(settings, identity("web"), images["sleeper"]))
    metrics = AgentMetrics()
    metrics.count_error("RktTimeout")
    exporter = Exporter(metrics, PodSampler(executor))
    server = MetricsServer("http://127.0.0.1:0/metrics", exporter.render)
    await server.start()
    try:
        assert server.port > 0
        content_type, text = await asyncio.to_thread(_get, server.port)
    finally:
        await server.stop()
        await exporter.sampler.close()
    assert content_type == CONTENT_TYPE
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    task = (("name", "web"), ("namespace", "default"), ("uuid", pod.uuid))
    assert values[("rktoperator_task_memory_rss_bytes", task)] > 0
    assert values[("rktoperator_task_cpu_seconds_total", task)] > 0
    assert values[("rktoperator_pods", (("state", "running"),))] == 1
    assert values[("rktoperator_reconcile_errors_total", (("reason", "RktTimeout"),))] == 1


async def test_a_taken_port_is_logged_not_fatal(executor: Executor) -> None:
    exporter = Exporter(AgentMetrics(), PodSampler(executor))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = await server_module.start_metrics(
            f"http://127.0.0.1:{port}/metrics", exporter.render
        )
    assert server is None
    assert await server_module.start_metrics("", exporter.render) is None
