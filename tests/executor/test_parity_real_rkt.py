"""The Nomad-parity fixes where they depend on what rkt does, checked on the real rkt (host
flavor, root): E18 is terminal and leaves no pod; a stop by the agent is recorded (rkt
itself says exit code 0); ``rkt enter`` attached forwards stdin and keeps the streams
apart, or gives a terminal; a failed ``rkt trust`` is reported with command, output, error.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rkt_devkit.netd import user_network
from rkt_operator import errors
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import identity, make_plan

pytestmark = pytest.mark.rkt


def _settings(binary: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        rkt_path=binary,
        rkt_dir=tmp_path / "rkt",
        rkt_local_config=tmp_path / "etc-rkt",
        task_root=tmp_path / "tasks",
        launcher="auto",
        **extra,  # type: ignore[arg-type]
    )


async def _app_set_up(executor: Executor, uuid: str) -> None:
    """Right after the start, rkt enter may not find the app's root yet: wait until it does
    (stage1's systemd has then set the app up)."""
    for _ in range(150):
        _, code = await executor.rkt.enter(uuid, ["/bin/true"])
        if code == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the app of pod {uuid} was never set up")


@pytest.fixture
def link_local_net(tmp_path: Path) -> Iterator[str]:
    """A CNI network with only link-local addresses, where run-prepared's stage1 reads user
    networks (/etc/rkt/net.d); removed afterwards."""
    name = "cvll" + tmp_path.name[-6:].replace("_", "").lower()
    conf = {"type": "ptp", "ipam": {"type": "host-local", "subnet": "169.254.78.0/24"}}
    with user_network(name, conf):
        yield name


async def test_mapped_ports_without_a_global_address_fail_for_good_and_leave_no_pod(
    real_rkt: str,
    host_left_clean: None,
    link_local_net: str,
    tmp_path: Path,
    images: dict[str, Path],
) -> None:
    settings = _settings(real_rkt, tmp_path, discovery_timeout_seconds=5.0)
    executor = Executor(settings=settings, rkt=RktCli(settings))
    plan = make_plan(
        settings, identity(), images["sleeper"], net=link_local_net,
        port_names=("http",), network_required=True,
    )  # fmt: skip
    with pytest.raises(errors.NetworkRequiredError) as info:
        await executor.ensure_started(plan)
    assert info.value.retryable is False
    # rkt ran the pod with only its link-local address, which discovery does not take.
    assert "no good driver networks out of 1 returned" in str(info.value)
    assert await executor.list_pods() == []


async def test_a_stop_by_the_agent_is_recorded_where_rkt_says_exit_code_0(
    real_rkt: str, host_left_clean: None, tmp_path: Path, images: dict[str, Path]
) -> None:
    # (The forced path is not reachable here: stage1's systemd itself kills an app that
    # ignores SIGTERM within the shortest grace; the simulator tier covers SIGKILL.)
    settings = _settings(real_rkt, tmp_path)
    executor = Executor(settings=settings, rkt=RktCli(settings))
    pod = await executor.ensure_started(make_plan(settings, identity(), images["sleeper"]))
    try:
        await _app_set_up(executor, pod.uuid)  # a stop during stage1's boot is not graceful
        await executor.stop(pod.uuid, kill_timeout=30)  # generous: a loaded host is slow
        stopped = await executor.observe(pod.uuid)
        assert stopped is not None
        assert stopped.finished
        assert (stopped.exit_code, stopped.stop_signal) == (0, "SIGTERM")  # rkt alone: just 0
        status = await executor.rkt.status(pod.uuid)
        assert [app.exit_code for app in status.apps] == [0]
    finally:
        await executor.stop(pod.uuid, kill_timeout=10)
        await executor.remove(pod.uuid)


_ENTER = """
import sys
from pathlib import Path
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
s = Settings(rkt_path=sys.argv[1], rkt_dir=Path(sys.argv[2]), rkt_local_config=Path(sys.argv[3]))
cmd = ["/bin/sh", "-c", sys.argv[6]]
sys.exit(RktCli(s).enter_attached(sys.argv[4], cmd, tty=sys.argv[5] == "tty"))
"""


async def test_attached_enter_forwards_stdin_and_keeps_streams_apart_or_gives_a_tty(
    real_rkt: str, host_left_clean: None, tmp_path: Path, images: dict[str, Path]
) -> None:
    settings = _settings(real_rkt, tmp_path)
    executor = Executor(settings=settings, rkt=RktCli(settings))
    pod = await executor.ensure_started(make_plan(settings, identity(), images["sleeper"]))
    base = [sys.executable, "-c", _ENTER, real_rkt, str(settings.rkt_dir),
            str(settings.rkt_local_config), pod.uuid]  # fmt: skip
    try:
        await _app_set_up(executor, pod.uuid)
        script = "tr a-z A-Z; echo oops >&2; test -t 0 || echo no-tty; exit 3"
        plain = subprocess.run(
            [*base, "plain", script], input="hello\n", capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert (plain.returncode, plain.stdout, plain.stderr) == (3, "HELLO\nno-tty\n", "oops\n")
        script = "test -t 0 && test -t 1 && echo tty-in-out; read line; echo got=$line"
        tty = subprocess.run(
            [*base, "tty", script], input="typed\n", capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert tty.returncode == 0, tty.stderr
        lines = tty.stdout.replace("\r\n", "\n").splitlines()
        assert "tty-in-out" in lines
        assert "got=typed" in lines
    finally:
        await executor.stop(pod.uuid, kill_timeout=10)
        await executor.remove(pod.uuid)


async def test_trust_failure_names_command_output_and_error(real_rkt: str, tmp_path: Path) -> None:
    settings = _settings(real_rkt, tmp_path, rkt_timeout_seconds=120.0)
    args = ["trust", "--skip-fingerprint-review=true", "--prefix=example.com/invalid",
            "--debug=false"]  # fmt: skip
    with pytest.raises(errors.TrustError) as info:
        await RktCli(settings).trust(args)
    message = info.value.message
    assert message.startswith("Error running rkt trust: exit status 254; command: rkt trust ")
    assert "--prefix=example.com/invalid" in message
    assert "; output: " in message
    assert "; error: trust: " in message
