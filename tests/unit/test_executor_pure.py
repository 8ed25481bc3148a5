"""Pure pieces of the executor: identity from annotations, kill-timeout cap, launcher choice
and argv, discovery backoff, supervisor record files."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rkt_operator.executor import discovery, files, launcher, service
from rkt_operator.rkt.cli import go_duration, redact
from rkt_operator.rkt.types import PodObservation, TaskIdentity

IDENTITY = TaskIdentity(namespace="default", name="web", uid="0f6c2a5e-1b3d", generation=3)


def test_identity_round_trips_through_annotations() -> None:
    assert service.identity_from(IDENTITY.annotations()) == IDENTITY


@pytest.mark.parametrize(
    "annotations",
    [
        pytest.param({}, id="none"),
        pytest.param({"rktoperator.io/uid": "x"}, id="partial"),
        pytest.param(
            {**IDENTITY.annotations(), "rktoperator.io/generation": "three"}, id="bad-gen"
        ),
    ],
)
def test_identity_requires_every_annotation(annotations: dict[str, str]) -> None:
    assert service.identity_from(annotations) is None


def test_resolve_launcher(tmp_path: Path) -> None:
    absent = tmp_path / "no-systemd"
    assert launcher.resolve_kind("auto", systemd_marker=absent) == "detached"
    (tmp_path / "systemd").mkdir()
    assert launcher.resolve_kind("auto", systemd_marker=tmp_path / "systemd") == "systemd"
    assert launcher.resolve_kind("detached", systemd_marker=tmp_path / "systemd") == "detached"
    assert launcher.resolve_kind("systemd", systemd_marker=absent) == "systemd"


def test_systemd_run_argv() -> None:
    uuid = "5d3c2b1a-9e8f-4a7b-8c6d-0e1f2a3b4c5d"
    rkt = ["/usr/bin/rkt", "--dir=/var/lib/rkt", "run-prepared", "--net=default", uuid]
    argv = launcher.systemd_run_argv(rkt, uuid, workdir=Path("/tasks/t"), path_env="/usr/bin")
    assert argv == [
        "systemd-run",
        f"--unit=rkt-{uuid}",
        "--slice=machine",
        "-p",
        "KillMode=mixed",
        "--collect",
        "--working-directory=/tasks/t",
        "--setenv=PATH=/usr/bin",
        "--",
        *rkt,
    ]


def test_shim_argv_runs_this_interpreter(tmp_path: Path) -> None:
    argv = launcher.shim_argv(["rkt", "run-prepared", "u"], tmp_path, "u")
    assert argv[:3] == [sys.executable, "-m", "rkt_operator.executor.shim"]
    assert argv[-4:] == ["--", "rkt", "run-prepared", "u"]
    assert f"--exit-file={tmp_path / 'u.exit'}" in argv


def test_discovery_backoff_grows_to_one_second_with_jitter() -> None:
    delays = [discovery.next_delay(n) for n in range(8)]
    assert 0.09 <= delays[0] <= 0.1
    assert all(0.9 <= d <= 1.0 for d in delays[4:])
    assert 0.9 <= discovery.next_delay(10_000) <= 1.0


def test_redact_and_durations() -> None:
    argv = ["rkt", "prepare", "--set-env=TOKEN=s3cret", "--set-env=A=b", "s3cret"]
    assert redact(argv, {"s3cret", ""}) == (
        "rkt",
        "prepare",
        "--set-env=TOKEN=***",
        "--set-env=A=b",
        "***",
    )
    assert go_duration(30) == "30s"
    assert go_duration(0.5) == "0.5s"


def test_exit_record_round_trip_and_signals(tmp_path: Path) -> None:
    path = tmp_path / "u.exit"
    files.write_exit(path, 3)
    record = files.read_exit(path)
    assert record is not None
    assert (record.returncode, record.exit_code) == (3, 3)
    assert record.finished_at.tzinfo is not None
    assert record.finished_at <= datetime.now(UTC)
    files.write_exit(path, -9)
    killed = files.read_exit(path)
    assert killed is not None
    assert killed.exit_code == 137
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"returncode": "3"}', b'{"returncode": true}', b"x" * 5000]
)
def test_exit_record_garbage_is_ignored(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "u.exit"
    path.write_bytes(content)
    assert files.read_exit(path) is None


def test_marker_alive(tmp_path: Path) -> None:
    marker = tmp_path / "u.launch"
    assert not files.marker_alive(marker)
    marker.write_bytes(files.marker_content(os.getpid()))
    assert files.marker_alive(marker)
    data = json.loads(marker.read_text())
    data["create_time"] -= 100  # same pid, another process (pid reuse)
    marker.write_text(json.dumps(data))
    assert not files.marker_alive(marker)
    marker.write_text("{}")
    assert not files.marker_alive(marker)


def test_lock_file_name_is_safe(tmp_path: Path) -> None:
    path = files.lock_file(tmp_path, "../../etc/passwd")
    assert path.parent == tmp_path / ".locks"
    assert "/" not in path.name


def _pod_started(at: datetime | None) -> PodObservation:
    return PodObservation(
        uuid="u1", identity=IDENTITY, state="running", running=True, finished=False,
        exit_code=None, ip=None, created_at=None, started_at=at, finished_at=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("age", "grace", "wait"),
    [
        pytest.param(0.5, 30.0, 2.5, id="young: the rest of the boot window"),
        pytest.param(0.5, 2.0, 1.0, id="capped at half the grace"),
        pytest.param(3.0, 30.0, 0.0, id="settled"),
        pytest.param(600.0, 30.0, 0.0, id="old"),
        pytest.param(-5.0, 4.0, 2.0, id="clock ahead: still capped"),
    ],
)
def test_a_graceful_stop_lets_a_just_started_pod_settle(
    age: float, grace: float, wait: float
) -> None:
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    pod = _pod_started(now - timedelta(seconds=age))
    assert service.Executor._settle_seconds(pod, grace, now) == pytest.approx(wait)


def test_a_pod_without_a_start_time_is_stopped_at_once() -> None:
    assert service.Executor._settle_seconds(_pod_started(None), 30.0) == 0.0
