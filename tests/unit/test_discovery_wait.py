"""Discovery's wake-up files (``executor.discovery``): what is watched, how long a wait may
last, the stat-only waiting, and ``discover`` against a stand-in for ``rkt status`` that,
like rkt, answers from the pod directory (running once under ``pods/run``, networks once
``net-info.json`` is there).

The waits that must end on a file run with a 30 s backoff inside a 20 s ``wait_for``: a
file that did not end the wait fails the test instead of making it slow."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from rkt_operator import errors
from rkt_operator.executor import discovery, files
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.pods import NetworkInfo, PodStatus

UUID = "0b3f1c2e-4d5a-46b7-8c9d-0e1f2a3b4c5d"
IP = "172.16.28.7"
SAFETY = 20.0  # seconds: far above any wait these tests expect, far below the 30 s backoff


def base(n: int) -> float:
    """The backoff delay ``n`` without its jitter."""
    return min(discovery.MAX_DELAY, discovery.FIRST_DELAY * 2.0**n)


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery.random, "uniform", lambda _low, high: high)


@pytest.fixture
def slow_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backoff delay 30 s: only a wake-up file can end a watched wait in time."""
    monkeypatch.setattr(discovery, "next_delay", lambda _n: 30.0)


class StatusFromPodDir:
    """``rkt status`` answered from the pod directory as rkt does: ``prepared`` until
    ``pods/run/<uuid>`` exists, then ``state``; the network ``ip`` once ``net-info.json``
    exists (its content is not read)."""

    def __init__(self, rkt_dir: Path, *, state: str = "running", ip: str = IP) -> None:
        self.run = rkt_dir / "pods" / "run" / UUID
        self.state = state
        self.ip = ip
        self.calls = 0

    async def status(self, uuid: str, *, deadline: float | None = None) -> PodStatus:
        assert uuid == UUID
        self.calls += 1
        if not self.run.is_dir():
            return PodStatus(uuid=uuid, state="prepared")
        nets = (NetworkInfo("default", "eth0", self.ip),)
        return PodStatus(
            uuid=uuid,
            state=self.state,
            networks=nets if (self.run / "net-info.json").exists() else (),
        )

    def cli(self) -> RktCli:
        return cast(RktCli, self)


def later(delay: float, action: Callable[[], Any]) -> None:
    asyncio.get_running_loop().call_later(delay, action)


@pytest.fixture
def rkt_dir(tmp_path: Path) -> Path:
    (tmp_path / "rkt" / "pods" / "run").mkdir(parents=True)
    return tmp_path / "rkt"


# ----- pure: what is watched, how long at most ------------------------------------------------


def test_ready_signal_is_net_info_when_an_ip_is_wanted_else_the_run_directory(
    tmp_path: Path,
) -> None:
    run = tmp_path / "pods" / "run" / UUID
    assert discovery.ready_signal(tmp_path, UUID, want_ip=True) == run / "net-info.json"
    assert discovery.ready_signal(tmp_path, UUID, want_ip=False) == run


def test_wake_paths_add_the_supervisors_exit_record(tmp_path: Path) -> None:
    task = tmp_path / "task"
    ready = discovery.ready_signal(tmp_path, UUID, want_ip=True)
    assert discovery.wake_paths(tmp_path, UUID, want_ip=True) == (ready,)
    assert discovery.wake_paths(tmp_path, UUID, want_ip=True, launch_root=task) == (
        ready,
        files.exit_file(task, UUID),
    )


def test_a_watched_wait_lasts_at_most_the_backoff_delay_of_its_call() -> None:
    for calls in range(12):
        wait = discovery.plan_wait(calls, 60.0, watch=True)
        assert wait.watch
        assert 0.9 * base(calls) <= wait.seconds <= base(calls)


def test_the_plain_schedule_calls_at_once_then_backs_off() -> None:
    first = discovery.plan_wait(0, 60.0, watch=False)
    assert first == discovery.Wait(seconds=0.0, watch=False)
    for calls in range(1, 12):
        wait = discovery.plan_wait(calls, 60.0, watch=False)
        assert not wait.watch
        assert 0.9 * base(calls - 1) <= wait.seconds <= base(calls - 1)


@pytest.mark.parametrize("watch", [True, False])
def test_a_wait_never_passes_the_deadline(watch: bool) -> None:
    assert discovery.plan_wait(5, 0.05, watch=watch).seconds <= 0.05
    assert discovery.plan_wait(5, -1.0, watch=watch).seconds == 0.0


@pytest.mark.usefixtures("no_jitter")
def test_with_no_file_the_watched_calls_come_when_the_plain_schedule_made_its_next() -> None:
    """The n-th watched call is due when the plain schedule made its (n+1)-th: a pod whose
    wake-up files never show (a failure, a layout rkt does not follow) is looked at on the
    old schedule, without its immediate first call."""
    watched = plain = 0.0
    plain += discovery.plan_wait(0, 60.0, watch=False).seconds
    for calls in range(12):
        watched += discovery.plan_wait(calls, 60.0, watch=True).seconds
        plain += discovery.plan_wait(calls + 1, 60.0, watch=False).seconds
        assert watched == pytest.approx(plain)


# ----- the stat-only wait -----------------------------------------------------------------------


async def test_wait_for_any_returns_at_once_when_a_file_is_there(tmp_path: Path) -> None:
    there = tmp_path / "there"
    there.touch()
    assert await discovery.wait_for_any([tmp_path / "absent", there], 0.0)


async def test_wait_for_any_gives_up_after_its_limit(tmp_path: Path) -> None:
    assert not await discovery.wait_for_any([tmp_path / "absent"], 0.05)


async def test_wait_for_any_wakes_when_a_file_appears(tmp_path: Path) -> None:
    late = tmp_path / "late"
    later(0.05, late.touch)
    assert await asyncio.wait_for(discovery.wait_for_any([late], 30.0), SAFETY)


async def test_wait_for_any_never_opens_the_file(tmp_path: Path) -> None:
    """A FIFO blocks whoever opens it for reading: stat() alone does not."""
    fifo = tmp_path / "net-info.json"
    os.mkfifo(fifo)
    assert await asyncio.wait_for(discovery.wait_for_any([fifo], 30.0), SAFETY)


# ----- discover with the wake-up files ----------------------------------------------------------


async def _discover(
    fake: StatusFromPodDir, rkt_dir: Path, *, want_ip: bool = True, **kwargs: Any
) -> discovery.Discovered:
    wake = discovery.wake_paths(rkt_dir, UUID, want_ip=want_ip, launch_root=rkt_dir.parent)
    options: dict[str, Any] = {"deadline_seconds": 60.0, "wake_on": wake, **kwargs}
    return await asyncio.wait_for(
        discovery.discover(fake.cli(), UUID, want_ip=want_ip, port_names=(), **options),
        SAFETY,
    )


@pytest.mark.usefixtures("slow_backoff")
async def test_one_status_call_when_net_info_shows_during_the_wait(rkt_dir: Path) -> None:
    fake = StatusFromPodDir(rkt_dir)
    fake.run.mkdir()  # running, no network yet: the first status would have no IP
    later(0.05, (fake.run / "net-info.json").touch)
    found = await _discover(fake, rkt_dir)
    assert (found.status.state, found.ip) == ("running", IP)
    assert fake.calls == 1


@pytest.mark.usefixtures("slow_backoff")
async def test_the_file_is_a_wake_up_only_its_content_is_not_read(rkt_dir: Path) -> None:
    fake = StatusFromPodDir(rkt_dir, ip="172.16.28.99")
    fake.run.mkdir()
    (fake.run / "net-info.json").write_text('[{"ip": "10.9.9.9"}] garbage')
    found = await _discover(fake, rkt_dir)
    assert found.ip == "172.16.28.99"  # rkt status's, not the file's
    assert fake.calls == 1


@pytest.mark.usefixtures("slow_backoff")
async def test_without_an_ip_to_wait_for_the_run_directory_wakes(rkt_dir: Path) -> None:
    fake = StatusFromPodDir(rkt_dir)
    later(0.05, fake.run.mkdir)
    found = await _discover(fake, rkt_dir, want_ip=False)
    assert (found.status.state, found.ip) == ("running", None)
    assert fake.calls == 1


@pytest.mark.usefixtures("slow_backoff")
@pytest.mark.parametrize("at_once", [True, False], ids=["recorded-before", "recorded-during"])
async def test_a_launch_that_failed_is_noticed_on_its_exit_record(
    rkt_dir: Path, at_once: bool
) -> None:
    """run-prepared ended with the pod still prepared: no net-info.json will ever come, the
    supervisor's exit record ends the wait and the executor's check raises."""
    fake = StatusFromPodDir(rkt_dir)
    record = files.exit_file(rkt_dir.parent, UUID)
    seen: list[str] = []

    async def check(status: PodStatus) -> None:
        seen.append(status.state)
        if status.state == "prepared" and record.exists():
            raise errors.RktError("rkt run-prepared exited with 254 before the pod ran")

    if at_once:
        record.write_text("254\n")
    else:
        later(0.05, lambda: record.write_text("254\n"))
    with pytest.raises(errors.RktError, match="exited with 254"):
        await _discover(fake, rkt_dir, check=check)
    assert seen == ["prepared"]


@pytest.mark.usefixtures("slow_backoff")
async def test_a_pod_that_ended_before_its_network_is_returned_finished(rkt_dir: Path) -> None:
    fake = StatusFromPodDir(rkt_dir, state="exited")
    fake.run.mkdir()
    later(0.05, lambda: files.exit_file(rkt_dir.parent, UUID).write_text("1\n"))
    found = await _discover(fake, rkt_dir)
    assert found.status.finished
    assert fake.calls == 1


async def test_with_no_file_ever_the_calls_follow_the_backoff(
    rkt_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layout the agent does not know (rkt's pods are not where it looks): nothing ever
    wakes the waits, the calls come at their capped delays until rkt shows the IP."""
    monkeypatch.setattr(discovery, "next_delay", lambda _n: 0.01)
    fake = StatusFromPodDir(tmp_path / "elsewhere")
    seen: list[str] = []

    async def check(status: PodStatus) -> None:
        seen.append(status.state)
        if len(seen) == 3:
            fake.run.mkdir(parents=True)
            (fake.run / "net-info.json").touch()

    found = await _discover(fake, rkt_dir, check=check)
    assert found.ip == IP
    assert seen == ["prepared", "prepared", "prepared", "running"]
    assert not any(path.exists() for path in discovery.wake_paths(rkt_dir, UUID, want_ip=True))


async def test_a_file_that_stays_does_not_make_calls_back_to_back(
    rkt_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """net-info.json is there but its address is link-local (discovery does not take it):
    after the call it woke, the plain backoff (0.2 s here) spaces the calls to the
    deadline (1 s): at most 1 + 1/0.2 of them, not a loop of status calls."""
    monkeypatch.setattr(discovery, "next_delay", lambda _n: 0.2)
    fake = StatusFromPodDir(rkt_dir, ip="169.254.3.4")
    fake.run.mkdir()
    (fake.run / "net-info.json").touch()
    with pytest.raises(errors.NetworkDiscoveryError, match="no good driver networks"):
        await _discover(fake, rkt_dir, deadline_seconds=1.0)
    assert 2 <= fake.calls <= 8


@pytest.mark.usefixtures("slow_backoff")
async def test_without_wake_up_files_the_first_call_is_at_once(rkt_dir: Path) -> None:
    fake = StatusFromPodDir(rkt_dir)
    fake.run.mkdir()
    (fake.run / "net-info.json").touch()
    found = await asyncio.wait_for(
        discovery.discover(
            fake.cli(), UUID, want_ip=True, port_names=(), deadline_seconds=60.0, wake_on=()
        ),
        SAFETY,
    )
    assert found.ip == IP
    assert fake.calls == 1
