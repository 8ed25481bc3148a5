"""The Nomad-parity fixes where they depend on what rkt does, checked on the real rkt (host
flavor, root): E18 is terminal and leaves no pod; a stop by the agent is recorded (rkt
itself says exit code 0); ``rkt enter`` attached forwards stdin and keeps the streams
apart, or gives a terminal, and what it started in the pod ends when its client goes; a
failed ``rkt trust`` is reported with command, output, error.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rkt_devkit.netd import user_network
from rkt_operator import errors
from rkt_operator.executor.service import Executor
from rkt_operator.rkt import attached
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


@dataclass(frozen=True)
class UpPod:
    executor: Executor
    uuid: str
    enter: list[str]  # the _ENTER helper's argv up to the pod: mode and script follow


@pytest.fixture
async def up_pod(
    real_rkt: str, host_left_clean: None, tmp_path: Path, images: dict[str, Path]
) -> AsyncIterator[UpPod]:
    """A sleeper pod on real rkt whose app is up (a stop during stage1's boot is not
    graceful); stopped and removed afterwards (a generous stop: a loaded host is slow)."""
    settings = _settings(real_rkt, tmp_path)
    executor = Executor(settings=settings, rkt=RktCli(settings))
    pod = await executor.ensure_started(make_plan(settings, identity(), images["sleeper"]))
    enter = [sys.executable, "-c", _ENTER, real_rkt, str(settings.rkt_dir),
             str(settings.rkt_local_config), pod.uuid]  # fmt: skip
    try:
        await _app_set_up(executor, pod.uuid)
        yield UpPod(executor, pod.uuid, enter)
    finally:
        await executor.stop(pod.uuid, kill_timeout=30)
        await executor.remove(pod.uuid)


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


async def test_a_stop_by_the_agent_is_recorded_where_rkt_says_exit_code_0(up_pod: UpPod) -> None:
    # (The forced path is not reachable here: stage1's systemd itself kills an app that
    # ignores SIGTERM within the shortest grace; the simulator tier covers SIGKILL.)
    executor, uuid = up_pod.executor, up_pod.uuid
    await executor.stop(uuid, kill_timeout=30)  # generous: a loaded host is slow
    stopped = await executor.observe(uuid)
    assert stopped is not None
    assert stopped.finished
    assert (stopped.exit_code, stopped.stop_signal) == (0, "SIGTERM")  # rkt alone: just 0
    status = await executor.rkt.status(uuid)
    assert [app.exit_code for app in status.apps] == [0]


_ENTER = """
import sys
from pathlib import Path
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
s = Settings(rkt_path=sys.argv[1], rkt_dir=Path(sys.argv[2]), rkt_local_config=Path(sys.argv[3]))
cmd = ["/bin/sh", "-c", sys.argv[6]]
mode = sys.argv[5]
client_input = {"end": "held", "frames": "frames"}.get(mode.rpartition("-")[2], "inherit")
sys.exit(RktCli(s).enter_attached(
    sys.argv[4], cmd, tty=mode.startswith("tty"), client_input=client_input
))
"""


async def test_attached_enter_forwards_stdin_and_keeps_streams_apart_or_gives_a_tty(
    up_pod: UpPod,
) -> None:
    base = up_pod.enter
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


def _sessions_of(marker: str) -> set[int]:
    """The session ids of the live ``sleep MARKER`` processes (that of ``rkt enter``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
            if argv == [b"sleep", marker.encode()]:
                found.add(os.getsid(int(entry.name)))
        except (OSError, ValueError):
            continue
    return found


def _live_in_session(sid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        try:
            mine = entry.name.isdigit() and os.getsid(int(entry.name)) == sid
            if mine and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return out


def _bounded(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 120
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


# (mode of the _ENTER script, how its client goes)
_GOING = [
    ("plain-end", "input"),
    ("tty-end", "input"),
    ("plain-frames", "input"),
    ("tty", "hang-up"),
    ("plain", "SIGTERM"),
]


async def test_attached_enter_ends_what_it_started_in_the_pod_when_its_client_goes(
    up_pod: UpPod,
) -> None:
    """rkt enter killed alone leaves its command running in the pod: the attached exec ends
    the whole session of rkt enter when its input (held open by the client) ends, when its
    terminal hangs up, or on SIGTERM; a command that ignores SIGTERM and SIGHUP gets SIGKILL.
    With input in frames, the command gets the input and its end, and its exit code comes
    back."""
    base = up_pod.enter
    for n, (mode, how) in enumerate(_GOING):
        marker = str(4600 + n)
        script = f"trap '' TERM HUP; sleep {marker}; echo after"
        if how == "hang-up":
            main, side = os.openpty()
            client = subprocess.Popen(
                [*base, mode, script], stdin=side, stdout=side, stderr=side,
                start_new_session=True,
            )  # fmt: skip
            os.close(side)
        else:
            client = subprocess.Popen(
                [*base, mode, script], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            _bounded(functools.partial(_sessions_of, marker), f"sleep {marker} in the pod")
            [session] = _sessions_of(marker)
            assert len(_live_in_session(session)) >= 3  # rkt enter, sh, sleep
            if how == "input":
                assert client.stdin is not None
                client.stdin.close()
            elif how == "hang-up":
                os.close(main)
            else:
                client.send_signal(signal.SIGTERM)
            client.wait(timeout=120)
            _bounded(
                lambda s=session: not _live_in_session(s),
                f"{mode}: the session of rkt enter ends after {how}",
            )
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
            if client.stdin is not None and not client.stdin.closed:
                client.stdin.close()
    # (Once the pod has run commands: right after its start an enter may miss its tools.)
    framed = subprocess.Popen(
        [*base, "plain-frames", "tr a-z A-Z; echo oops >&2; exit 4"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert framed.stdin is not None
    framed.stdin.write(attached.frame(b"hel") + attached.frame(b"lo\n") + attached.frame(b""))
    framed.stdin.flush()  # and held open: its end would be the client's
    try:
        framed.wait(timeout=120)  # stdin still open (communicate() would close it)
    finally:
        framed.kill()
    assert framed.stdout is not None
    assert framed.stderr is not None
    out, err = framed.stdout.read(), framed.stderr.read()
    for pipe in (framed.stdin, framed.stdout, framed.stderr):
        pipe.close()
    assert (framed.returncode, out, err) == (4, b"HELLO\n", b"oops\n")
