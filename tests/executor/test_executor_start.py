"""``Executor.ensure_started`` against rkt-sim: start, adopt, discovery, and failures."""

from __future__ import annotations

import asyncio
import ipaddress
import stat
from pathlib import Path

import pytest

from rkt_operator import errors
from rkt_operator.executor import discovery, files, service
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import LaunchPlan, PodObservation
from rkt_operator.settings import Settings
from simrkt import identity, make_plan, make_settings, set_faults

DEFAULT_NET = ipaddress.ip_network("172.16.28.0/24")


async def pods_of(rkt: RktCli, uid: str) -> list[str]:
    return [p.uuid for p in await rkt.list() if p.annotations().get("rktoperator.io/uid") == uid]


async def test_start_discovers_ip_and_port_map(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    ident = identity()
    plan = make_plan(
        settings,
        ident,
        images["sleeper"],
        ports={"http": 18080},
        port_names=("http", "metrics", "absent"),
        network_required=True,
    )
    observed = await executor.ensure_started(plan)
    assert observed.running
    assert observed.state == "running"
    assert not observed.finished
    assert observed.identity == ident
    assert observed.ip is not None
    assert ipaddress.ip_address(observed.ip) in DEFAULT_NET
    assert observed.port_map == {"http": 8080, "metrics": 9100}
    assert observed.created_at is not None
    assert observed.started_at is not None
    assert observed.exit_code is None
    for path in (plan.dirs.alloc, plan.dirs.local, plan.dirs.secrets):
        assert path.is_dir()
    # The supervisor claimed the launch and is alive, independent of us.
    assert files.marker_alive(files.launch_marker(plan.dirs.root, observed.uuid))
    assert await pods_of(rkt, ident.uid) == [observed.uuid]


async def test_start_is_idempotent(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    plan = make_plan(settings, identity(), images["sleeper"])
    first = await executor.ensure_started(plan)
    again = await executor.ensure_started(plan)
    # A brand-new executor (an agent restart) adopts it too.
    fresh = await Executor(settings=settings, rkt=RktCli(settings)).ensure_started(plan)
    assert first.uuid == again.uuid == fresh.uuid
    assert await pods_of(rkt, identity().uid) == [first.uuid]


async def test_new_generation_gets_its_own_pod(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    one = await executor.ensure_started(make_plan(settings, identity(), images["sleeper"]))
    two = await executor.ensure_started(
        make_plan(settings, identity(generation=2), images["sleeper"])
    )
    assert one.uuid != two.uuid
    assert {
        o.identity.generation for o in await executor.pods_for(identity().uid) if o.identity
    } == {
        1,
        2,
    }


async def test_host_network_skips_discovery(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    plan = make_plan(settings, identity(), images["sleeper"], net="host", discover_network=False)
    observed = await executor.ensure_started(plan)
    assert observed.running
    assert observed.ip is None
    assert observed.port_map == {}


async def test_pod_exiting_during_start_is_returned_finished(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    observed = await executor.ensure_started(make_plan(settings, identity(), images["exit3"]))
    if not observed.finished:  # it may still be running at the first poll
        for _ in range(600):
            observed = await executor.observe(observed.uuid) or observed
            if observed.finished:
                break
    assert observed.finished
    assert observed.state == "exited"
    assert observed.exit_code == 3
    assert not observed.running


async def test_secret_env_file_is_private_and_reaches_the_app(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    plan = make_plan(
        settings,
        identity(),
        images["sleeper"],
        secret_env=[("API_TOKEN", "s3cr3t-value")],
        set_env={"PLAIN": "visible"},
    )
    env_file = plan.dirs.secret_env_file
    seen_at_prepare: list[tuple[str, bool, str]] = []

    async def on_prepared(uuid: str) -> None:
        state = (await executor.rkt.status(uuid)).state
        seen_at_prepare.append((uuid, env_file.exists(), state))

    observed = await executor.ensure_started(plan, on_prepared=on_prepared)
    # The hook sees the UUID before the launch; rkt read the secret file during prepare and
    # no second copy of the secret stays on disk afterwards.
    assert seen_at_prepare == [(observed.uuid, False, "prepared")]
    assert not env_file.exists()
    assert all("s3cr3t-value" not in word for word in plan.prepare)
    output, code = await executor.rkt.enter(observed.uuid, ["/bin/sh", "-c", "echo $API_TOKEN"])
    assert (output, code) == ("s3cr3t-value\n", 0)


def test_secret_env_file_is_written_private(tmp_path: Path) -> None:
    path = tmp_path / "secret.env"
    service._write_secret_env(path, [("API_TOKEN", "s3cr3t-value")])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "API_TOKEN=s3cr3t-value\n"


async def test_secret_with_newline_is_a_spec_error(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    plan = make_plan(settings, identity(), images["sleeper"], secret_env=[("A", "x\nB=y")])
    with pytest.raises(errors.SpecError):
        await executor.ensure_started(plan)
    assert await rkt.list() == []


async def test_prepare_rejection_leaves_nothing_and_is_retryable(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    plan = make_plan(settings, identity(), images["sleeper"], ports={"nosuchport": 18080})
    with pytest.raises(errors.PrepareError) as info:
        await executor.ensure_started(plan)
    # retried by the reconciler with the back-off (the node's store may change), so the
    # failed attempt must leave no pod behind
    assert info.value.retryable is True
    assert await executor.list_pods() == []


async def test_trust_failure_leaves_nothing_and_is_retryable(
    executor: Executor, settings: Settings, images: dict[str, Path], tmp_path: Path
) -> None:
    trust = [
        "trust",
        "--skip-fingerprint-review",
        "--prefix=example.com/x",
        str(tmp_path / "no.gpg"),
    ]
    plan = make_plan(settings, identity(), images["sleeper"], trust=trust)
    with pytest.raises(errors.TrustError) as info:
        await executor.ensure_started(plan)
    assert info.value.retryable is True
    assert await executor.list_pods() == []


async def test_required_network_missing_fails_and_cleans_up(
    rkt: RktCli, tmp_path: Path, images: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, discovery_timeout_seconds=2.0)
    executor = Executor(settings=settings, rkt=RktCli(settings))
    plan = make_plan(
        settings,
        identity(),
        images["sleeper"],
        net="none",
        port_names=("http",),
        network_required=True,
    )
    with pytest.raises(errors.NetworkRequiredError) as info:
        await executor.ensure_started(plan)
    assert info.value.retryable is False  # terminal, as the README's E18 row says
    assert "Trying to map ports but driver could not determine network information" in str(
        info.value
    )
    assert "timed out, last error: no networks found" in str(info.value)
    assert await executor.list_pods() == []


async def test_optional_network_missing_still_starts(
    rkt: RktCli, tmp_path: Path, images: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, discovery_timeout_seconds=1.0)
    executor = Executor(settings=settings, rkt=RktCli(settings))
    plan = make_plan(settings, identity(), images["sleeper"], net="none")
    observed = await executor.ensure_started(plan)
    assert observed.running
    assert observed.ip is None


async def test_failed_launch_removes_the_prepared_pod(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    # rkt refuses these DNS flags before the pod leaves `prepared`.
    plan = make_plan(
        settings, identity(), images["sleeper"], run_flags=["--dns=host", "--dns=8.8.8.8"]
    )
    with pytest.raises(errors.RktError) as info:
        await executor.ensure_started(plan)
    assert "exited with 254 before pod" in str(info.value)
    assert "--dns=host" in str(info.value)
    assert info.value.retryable is True
    assert await executor.list_pods() == []


async def test_rkt_failure_during_start_is_retryable(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    set_faults(settings, {"list": [{"action": "garbage"}]})
    plan = make_plan(settings, identity(), images["sleeper"])
    with pytest.raises(errors.RktOutputError) as info:
        await executor.ensure_started(plan)
    assert info.value.retryable is True
    observed = await executor.ensure_started(plan)  # fault consumed: the retry works
    assert observed.running


async def test_start_with_a_listing_at_hand_runs_no_rkt_list(
    settings: Settings, rkt: RktCli, images: dict[str, Path]
) -> None:
    ran: list[str] = []
    counting = Executor(
        settings=settings, rkt=RktCli(settings, observer=lambda sub, _s: ran.append(sub))
    )
    plan = make_plan(settings, identity(), images["sleeper"])
    observed = await counting.ensure_started(plan, listed=[])
    assert observed.running
    assert "list" not in ran
    assert ran.count("prepare") == 1
    # The start finished: no unfinished-start marker is left for the next start to heed.
    assert not files.start_marker(settings.task_root, identity().uid).exists()
    assert await pods_of(rkt, identity().uid) == [observed.uuid]


async def test_an_unfinished_start_overrules_the_listing_at_hand(
    executor: Executor, settings: Settings, rkt: RktCli, images: dict[str, Path]
) -> None:
    """A killed agent's start (its marker left behind) may have made a pod that the new
    agent's listing does not show: rkt is listed again, the pod adopted, none duplicated."""
    plan = make_plan(settings, identity(), images["sleeper"])
    first = await executor.ensure_started(plan)
    files.write_atomic(files.start_marker(settings.task_root, identity().uid), b"")
    again = await Executor(settings=settings, rkt=RktCli(settings)).ensure_started(plan, listed=[])
    assert again.uuid == first.uuid
    assert await pods_of(rkt, identity().uid) == [first.uuid]
    assert not files.start_marker(settings.task_root, identity().uid).exists()


# ----- discovery's wake-up files (executor.discovery) ------------------------------------------
# The backoff is 30 s during these starts and each start runs inside a 20 s wait_for: a
# start that waited for the backoff instead of rkt's files fails instead of being slow.

SLOW_BACKOFF = 30.0
SAFETY = 20.0


async def _start_on_files(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, plan: LaunchPlan, ran: list[str]
) -> PodObservation:
    counting = Executor(
        settings=settings, rkt=RktCli(settings, observer=lambda sub, _s: ran.append(sub))
    )
    with monkeypatch.context() as patched:
        patched.setattr(discovery, "next_delay", lambda _n: SLOW_BACKOFF)
        return await asyncio.wait_for(counting.ensure_started(plan, listed=[]), SAFETY)


@pytest.mark.parametrize("net", [None, "host"], ids=["contained", "host"])
async def test_a_start_asks_rkt_status_once_woken_by_its_files(
    monkeypatch: pytest.MonkeyPatch,
    rkt: RktCli,
    settings: Settings,
    images: dict[str, Path],
    net: str | None,
) -> None:
    """The status call comes when rkt wrote net-info.json (contained) or took the pod into
    pods/run (host: no IP to wait for), and that one call shows what discovery waits for."""
    plan = make_plan(settings, identity(), images["sleeper"], net=net, discover_network=net is None)
    ran: list[str] = []
    observed = await _start_on_files(monkeypatch, settings, plan, ran)
    assert observed.running
    assert (observed.ip is not None) == (net is None)
    assert ran.count("status") == 1
    ready = discovery.ready_signal(settings.rkt_dir, observed.uuid, want_ip=net is None)
    assert ready.exists()


async def test_a_launch_that_fails_is_noticed_on_its_exit_record(
    monkeypatch: pytest.MonkeyPatch, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    """run-prepared refuses the flags before the pod leaves prepared: no net-info.json ever,
    the supervisor's exit record wakes the wait and the start fails at once, as before."""
    plan = make_plan(
        settings, identity(), images["sleeper"], run_flags=["--dns=host", "--dns=8.8.8.8"]
    )
    ran: list[str] = []
    with pytest.raises(errors.RktError, match="exited with 254 before pod"):
        await _start_on_files(monkeypatch, settings, plan, ran)
    assert ran.count("status") == 1
    assert await rkt.list() == []


async def test_a_pod_that_exits_at_once_is_returned_without_waiting_for_the_backoff(
    monkeypatch: pytest.MonkeyPatch, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    ran: list[str] = []
    plan = make_plan(settings, identity(), images["exit3"])
    observed = await _start_on_files(monkeypatch, settings, plan, ran)
    assert observed.state in ("running", "exited")  # exited if rkt saw it go already
    assert ran.count("status") == 1
