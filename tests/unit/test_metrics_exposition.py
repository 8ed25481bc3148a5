"""The Prometheus text exposition of ``rkt_operator.metrics``: checked line by line and read
back with the reference parser (prometheus_client's), counters and histograms accumulate
as Prometheus defines them, and the pure node-sample and fingerprint renderings."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rkt_operator import __version__
from rkt_operator.executor.service import PodStats
from rkt_operator.fingerprint import Fingerprint
from rkt_operator.metrics.collector import (
    AgentMetrics,
    NodeSample,
    fingerprint_families,
    pod_families,
)
from rkt_operator.metrics.exposition import (
    Counter,
    Family,
    Histogram,
    escape_label_value,
    format_value,
    render,
)
from rkt_operator.rkt.pods import POD_STATES
from rkt_operator.rkt.types import PodObservation, TaskIdentity


def parsed(text: str) -> dict[str, Any]:
    """name -> reference-parser family (the parser raises on malformed text)."""
    return {fam.name: fam for fam in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (3.0, "3"),
        (-2, "-2"),
        (0.25, "0.25"),
        (1e-7, "1e-07"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (2.0**60, "1.152921504606847e+18"),
    ],
)
def test_values_are_written_as_prometheus_reads_them(value: float, text: str) -> None:
    assert format_value(value) == text


def test_label_values_and_help_are_escaped_and_read_back_intact() -> None:
    nasty = 'a\\b "quoted"\nnext line'
    assert escape_label_value(nasty) == 'a\\\\b \\"quoted\\"\\nnext line'
    fam = Family("x_total", 'help with \\ and\nnewline "quotes"', "counter").add(2, what=nasty)
    text = render([fam])
    assert text.splitlines()[0] == '# HELP x_total help with \\\\ and\\nnewline "quotes"'
    assert text.splitlines()[1] == "# TYPE x_total counter"
    assert text.endswith("\n")
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == 'help with \\ and\nnewline "quotes"'
    (sample,) = family.samples
    assert sample.labels == {"what": nasty}
    assert sample.value == 2


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ValueError, match="metric name"):
        Family("9lives", "x", "gauge")
    with pytest.raises(ValueError, match="label name"):
        Family("ok", "x", "gauge").add(1, **{"__reserved": "x"})
    with pytest.raises(ValueError, match="reserved"):
        Histogram("h_seconds", "x", labels=("le",))
    with pytest.raises(ValueError, match="twice"):
        render([Family("a", "x", "gauge"), Family("a", "y", "gauge")])


def test_counter_accumulates_per_label_set_and_only_goes_up() -> None:
    counter = Counter("errors_total", "Errors.", labels=("reason",))
    counter.inc(reason="RktTimeout")
    counter.inc(reason="RktTimeout")
    counter.inc(3, reason="InvalidSpec")
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, reason="InvalidSpec")
    with pytest.raises(ValueError, match="expected labels"):
        counter.inc(kind="x")
    text = render([counter.family()])
    assert samples(text, "errors_total") == {
        (("reason", "InvalidSpec"),): 3.0,
        (("reason", "RktTimeout"),): 2.0,
    }
    assert parsed(text)["errors"].type == "counter"


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    hist = Histogram("cmd_seconds", "Durations.", labels=("subcommand",), buckets=(0.1, 1, 10))
    for value in (0.05, 0.1, 0.5, 2.0, 20.0):
        hist.observe(value, subcommand="list")
    hist.observe(0.01, subcommand="status")
    text = render([hist.family()])
    family = parsed(text)["cmd_seconds"]
    assert family.type == "histogram"
    buckets = {
        s.labels["le"]: s.value
        for s in family.samples
        if s.name == "cmd_seconds_bucket" and s.labels["subcommand"] == "list"
    }
    assert buckets == {"0.1": 2.0, "1": 3.0, "10": 4.0, "+Inf": 5.0}
    assert samples(text, "cmd_seconds_count") == {
        (("subcommand", "list"),): 5.0,
        (("subcommand", "status"),): 1.0,
    }
    assert samples(text, "cmd_seconds_sum")[(("subcommand", "list"),)] == pytest.approx(22.65)
    assert hist.count(subcommand="status") == 1
    assert hist.count(subcommand="gc") == 0


def test_agent_metrics_count_rkt_commands_and_reconcile_errors() -> None:
    metrics = AgentMetrics()
    metrics.observe_rkt("status", 0.2)
    metrics.observe_rkt("status", 0.4)
    metrics.observe_rkt("", 1.0)
    metrics.count_error("RktTimeout")
    text = render(metrics.families())
    assert samples(text, "rktoperator_build_info") == {(("version", __version__),): 1.0}
    counts = samples(text, "rktoperator_rkt_command_duration_seconds_count")
    assert counts == {(("subcommand", "status"),): 2.0, (("subcommand", "unknown"),): 1.0}
    assert samples(text, "rktoperator_reconcile_errors_total") == {(("reason", "RktTimeout"),): 1.0}


def _pod(uuid: str, state: str, name: str | None = "web") -> PodObservation:
    identity = (
        TaskIdentity(namespace="team-a", name=name, uid=f"uid-{name}", generation=1)
        if name
        else None
    )
    return PodObservation(
        uuid=uuid,
        identity=identity,
        state=state,
        running=state == "running",
        finished=state == "exited",
        exit_code=None,
        ip=None,
        created_at=None,
        started_at=None,
        finished_at=None,
    )


def test_pod_families_give_state_counts_and_one_series_set_per_sampled_pod() -> None:
    now = datetime.now(UTC)
    sample = NodeSample(
        ok=True,
        pods=(
            _pod("u-1", "running", "web"),
            _pod("u-2", "running", "db"),  # stopped between list and stats: no sample
            _pod("u-3", "exited", "web"),
        ),
        stats={
            "u-1": PodStats(pid=42, processes=3, cpu_seconds=1.5, rss_bytes=4096, sampled_at=now)
        },
    )
    text = render(pod_families(sample))
    states = samples(text, "rktoperator_pods")
    assert {dict(k)["state"] for k in states} == set(POD_STATES)
    assert states[(("state", "running"),)] == 2
    assert states[(("state", "exited"),)] == 1
    assert states[(("state", "prepared"),)] == 0
    labels = (("name", "web"), ("namespace", "team-a"), ("uuid", "u-1"))
    assert samples(text, "rktoperator_task_cpu_seconds_total") == {labels: 1.5}
    assert samples(text, "rktoperator_task_memory_rss_bytes") == {labels: 4096.0}
    assert samples(text, "rktoperator_task_processes") == {labels: 3.0}
    assert samples(text, "rktoperator_pod_collection_success") == {(): 1.0}
    assert parsed(text)["rktoperator_task_cpu_seconds"].type == "counter"


def test_a_failed_sample_says_so_and_has_no_pod_series() -> None:
    text = render(pod_families(NodeSample(ok=False)))
    assert samples(text, "rktoperator_pod_collection_success") == {(): 0.0}
    assert samples(text, "rktoperator_task_cpu_seconds_total") == {}
    assert set(samples(text, "rktoperator_pods").values()) == {0.0}


def test_fingerprint_families() -> None:
    assert fingerprint_families(None) == []
    healthy = Fingerprint(
        detected=True,
        healthy=True,
        description="usable",
        attributes={"driver.rkt.version": "1.30.0", "driver.rkt.appc.version": "0.8.11"},
    )
    text = render(fingerprint_families(healthy))
    assert samples(text, "rktoperator_rkt_healthy") == {(): 1.0}
    assert samples(text, "rktoperator_rkt_info") == {
        (("appc_version", "0.8.11"), ("version", "1.30.0")): 1.0
    }
    broken = Fingerprint(detected=False, healthy=False, description="no rkt", attributes={})
    text = render(fingerprint_families(broken))
    assert samples(text, "rktoperator_rkt_healthy") == {(): 0.0}
    assert samples(text, "rktoperator_rkt_info") == {}
