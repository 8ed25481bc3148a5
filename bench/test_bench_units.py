"""Unit tests of the benchmark's arithmetic and formats (no cluster, no timing).

Run with ``.venv/bin/pytest bench/test_bench_units.py`` (the suite's ``testpaths`` is
``tests/``, so ``make test`` does not collect this file).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import psutil
import pytest
import yaml

from apimetrics import WriteKey, parse_writes, write_delta
from floor import running_status, selectors
from observe import peak_rss
from phase import BATCH_LABEL, NODE_LABEL, task_manifest
from report import (
    MIB,
    PhaseResult,
    composed_cpu_floor,
    percentile,
    ratio,
    render_json,
    render_text,
)
from rkt_operator.model.status import RktTaskStatus
from scale import ScaleResult, _confirmations
from scale import render as render_scale
from simnode import SimNode

# Lines as kube-apiserver v1.36 prints them (captured), plus reads and another resource.
METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out ...
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="rktoperator.io",\
resource="rkttasks",scope="resource",subresource="status",verb="GET",version="v1alpha1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="rktoperator.io",\
resource="rkttasks",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 4
apiserver_request_total{code="409",component="apiserver",dry_run="",group="rktoperator.io",\
resource="rkttasks",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="rktoperator.io",\
resource="rkttasks",scope="resource",subresource="",verb="POST",version="v1alpha1"} 7
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",\
resource="events",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",\
resource="events",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",\
resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_duration_seconds_count{resource="rkttasks",verb="PATCH"} 99
"""
COUNTED = frozenset({"rkttasks", "events"})


def test_parse_writes_sums_codes_and_groups_and_skips_reads() -> None:
    counts = parse_writes(METRICS, COUNTED)
    assert counts == {
        WriteKey("PATCH", "rkttasks", "status"): 6,
        WriteKey("POST", "rkttasks"): 7,
        WriteKey("POST", "events"): 5,
    }


def test_write_delta_keeps_only_what_moved() -> None:
    before = parse_writes(METRICS, COUNTED)
    after = parse_writes(
        METRICS.replace('verb="PATCH",version="v1alpha1"} 4', 'verb="PATCH",version="v1alpha1"} 9'),
        COUNTED,
    )
    assert write_delta(before, after) == {WriteKey("PATCH", "rkttasks", "status"): 5}
    assert str(WriteKey("PATCH", "rkttasks", "status")) == "PATCH rkttasks/status"


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 95, 4.8),
        ([5.0, 1.0, 4.0, 2.0, 3.0], 0, 1.0),
        ([5.0, 1.0, 4.0, 2.0, 3.0], 100, 5.0),
        ([2.5], 99, 2.5),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def _phase(name: str, latencies: list[float], writes: int, rss_mib: int) -> PhaseResult:
    return PhaseResult(
        name=name,
        tasks=4,
        latencies=latencies,
        wall_seconds=2.0,
        writes={WriteKey("POST", "rkttasks"): 4, WriteKey("PATCH", "rkttasks", "status"): writes},
        bench_writes=4,
        peak_rss=rss_mib * 1024 * 1024,
    )


def test_writes_per_task_leaves_out_the_benchmarks_own_creates() -> None:
    agent = _phase("agent", [1.0, 1.0, 1.0, 1.0], writes=12, rss_mib=100)
    assert agent.controller_writes == 12
    assert agent.writes_per_task == 3.0
    assert agent.throughput == 2.0


def test_ratios_are_agent_over_floor_and_json_has_no_nan() -> None:
    agent = _phase("agent", [2.0, 2.0, 2.0], writes=12, rss_mib=100)  # one task never ran
    floor = _phase("floor-client", [0.5, 0.5, 0.5, 0.5], writes=4, rss_mib=50)
    document = json.loads(render_json(agent, [floor], {"tasks": 4}))
    ratios = document["ratios"]["floor-client"]
    assert ratios["latency_p50_s"] == pytest.approx(4.0)
    assert ratios["api_writes_per_task"] == pytest.approx(3.0)
    assert ratios["peak_rss_mib"] == pytest.approx(2.0)
    assert ratios["pods_pss_mib"] is None  # not measured for either
    assert document["phases"][0]["running"] == 3
    assert ratio(1.0, 0.0) is None
    text = render_text(agent, [floor], "header")
    assert "agent/floor-client" in text
    assert "3/4" in text


def test_task_manifest_is_one_multi_document_stream() -> None:
    text = task_manifest(
        ["t-0", "t-1"], namespace="ns", node="n1", batch="b", spec={"image": "x/y:1"}
    )
    docs = list(yaml.safe_load_all(text))
    assert [d["metadata"]["name"] for d in docs] == ["t-0", "t-1"]
    assert all(d["spec"] == {"image": "x/y:1", "nodeName": "n1"} for d in docs)
    assert all(d["metadata"]["labels"] == {BATCH_LABEL: "b", NODE_LABEL: "n1"} for d in docs)


def test_the_floor_writes_a_status_the_agents_model_accepts() -> None:
    status = RktTaskStatus.model_validate(running_status("node-1", 3, 7))
    assert status.phase == "Running"
    assert status.observed_generation == 3
    assert {c.type: c.status for c in status.conditions} == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }


def test_the_floor_selects_like_the_agent() -> None:
    assert selectors("n1", "field") == {"field_selector": "spec.nodeName=n1"}
    assert selectors("n1", "label") == {"label_selector": "rktoperator.io/node=n1"}


def test_object_writes_and_events_are_counted_apart() -> None:
    writes = {
        WriteKey("POST", "rkttasks"): 4,
        WriteKey("PATCH", "rkttasks"): 8,
        WriteKey("PATCH", "rkttasks", "status"): 12,
        WriteKey("POST", "events"): 10,
    }
    result = PhaseResult(
        "agent", 4, [1.0] * 4, 2.0, writes, bench_writes=4, peak_rss=0,
        cpu_own_seconds=0.2, rkt_calls={"list": 2, "prepare": 4, "status": 6},
    )  # fmt: skip
    figures = result.figures()
    assert figures["object_writes_per_task"] == 5.0
    assert figures["event_writes_per_task"] == 2.5
    assert figures["api_writes_per_task"] == 7.5
    assert figures["rkt_calls_per_task"] == 3.0
    assert figures["cpu_own_ms_per_task"] == pytest.approx(50.0)
    text = render_text(result, [], "h")
    assert "rkt invocations per task during 'agent': list 0.50, prepare 1.00, status 1.50" in text


def test_rkt_wrapper_counts_subcommands_and_runs_the_binary(tmp_path: Path) -> None:
    real = tmp_path / "real-rkt"
    real.write_text('#!/bin/sh\necho "$@" >> ' + str(tmp_path / "args") + "\n")
    real.chmod(0o755)
    node = SimNode(tmp_path / "node", rkt_sim=real)
    node.write_wrapper()
    for args in (["--dir=/x", "list", "--format=json"], ["status", "u1"], ["--debug", "status"]):
        subprocess.run([str(node.rkt_path), *args], check=True)
    assert node.calls() == {"list": 1, "status": 2}
    assert (tmp_path / "args").read_text().splitlines() == [
        "--dir=/x list --format=json",
        "status u1",
        "--debug status",
    ]


def test_restart_confirmations_are_read_from_the_agent_log(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text(
        'time=t level=INFO logger=rkt_operator.kopfapp msg="agent started node=n"\n'
        "time=t level=INFO logger=kopf.objects object=bench/a msg=\"Handler 'create' "
        'succeeded."\n'
        "time=t level=ERROR logger=kopf.objects object=bench/b msg=\"Handler 'resume' "
        'failed temporarily: x"\n'
        "time=t level=INFO logger=kopf.objects object=bench/c msg=\"Handler 'resume' succ"
    )
    offset, done, failed, up = _confirmations(log, 0)
    assert (done, failed, up) == ({"bench/a"}, 1, True)
    with log.open("a") as fh:  # the partial last line is read once complete
        fh.write('eeded."\n')
    assert _confirmations(log, offset)[1:] == ({"bench/c"}, 0, False)


def test_the_composed_cpu_floor_is_kopf_plus_what_the_rkt_work_adds() -> None:
    def phase(name: str, own_seconds: float) -> PhaseResult:
        return PhaseResult(name, 10, [1.0] * 10, 1.0, {}, bench_writes=10, peak_rss=0,
                           cpu_own_seconds=own_seconds)  # fmt: skip

    agent = phase("agent", 0.30)  # 30 ms per start
    floors = [phase("floor-rkt", 0.13), phase("floor-kopf", 0.08), phase("floor-client", 0.02)]
    assert composed_cpu_floor(floors) == pytest.approx((8.0, 19.0))
    text = render_text(agent, floors, "h")
    assert (
        "(floor-rkt - floor-client) = 19.0 ms (2.38x the kopf floor); agent / that = 1.58" in text
    )
    assert composed_cpu_floor(floors[:2]) is None
    assert "the rkt work alone" not in render_text(agent, floors[:2], "h")


def test_peak_rss_is_the_kernels_high_water_mark_not_the_current_rss() -> None:
    """The mark is at least the RSS while 64 MiB are held, and stays there once they are
    freed while the RSS falls. (The test process may have peaked higher before: only
    lower bounds are asserted.)"""
    me = psutil.Process()
    resident = me.memory_info().rss
    block = b"\x01" * (64 * MIB)  # written, so resident until freed
    during = peak_rss(os.getpid())
    del block
    after = peak_rss(os.getpid())
    assert during is not None
    assert during >= resident + 60 * MIB
    assert after is not None
    # Freeing does not lower a high-water mark (the kernel's per-thread RSS counters lag
    # by a few pages, hence the slack).
    assert after >= during - MIB
    assert me.memory_info().rss < after - 32 * MIB  # while the RSS fell
    assert peak_rss(2**22 + 12345) is None  # no such process


def test_scale_report_names_the_bring_up_peak_and_when_the_idle_window_began() -> None:
    result = ScaleResult(tasks=10, running=5, up_peak_rss_mib=170.25, settle_seconds=15.0)
    text = render_scale(result, "h")
    assert "agent RSS, peak of the bring-up   170.2 MiB (VmHWM once all were up)" in text
    assert "it begins 15 s after the writes settled" in text
    assert "agent RSS, peak of the bring-up   -" in render_scale(
        ScaleResult(tasks=1, running=1), "h"
    )
