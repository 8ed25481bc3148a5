"""The real ``RktCli`` against ``rkt-sim``: every command's output is parsed, and every rkt
failure mode of the contract surfaces as its specific, retry-or-not error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rkt_operator import errors
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import identity, make_plan, set_faults, sim_processes


@pytest.fixture
def cli(rkt: RktCli) -> RktCli:
    return rkt


def prepare_args(settings: Settings, image: Path, *extra: str) -> list[str]:
    return list(make_plan(settings, identity(), image).prepare) + list(extra)


async def test_version(cli: RktCli) -> None:
    version = await cli.version()
    assert str(version.rkt) == "1.30.0"
    assert str(version.appc) == "0.8.11"


async def test_prepare_status_list_manifest(
    cli: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    assert await cli.list() == []  # rkt prints `null`
    uuid = await cli.prepare(prepare_args(settings, images["sleeper"]))
    status = await cli.status(uuid)
    assert status.uuid == uuid
    assert status.state == "prepared"
    assert status.annotations()["rktoperator.io/uid"] == identity().uid
    assert status.created_at is not None
    text = await cli.status_text(uuid)
    assert text.state == "prepared"
    assert text.pid is None
    assert [p.uuid for p in await cli.list()] == [uuid]
    manifest = await cli.cat_manifest(uuid)
    assert manifest["apps"][0]["app"]["ports"][0]["name"] == "http"
    # A unique prefix works like the full UUID.
    assert (await cli.status(uuid[:8])).uuid == uuid


async def test_not_found_is_specific_and_final(cli: RktCli) -> None:
    for call in (cli.status, cli.status_text, cli.cat_manifest, cli.rm, cli.stop):
        with pytest.raises(errors.PodNotFound) as info:
            await call("deadbeef")
        assert info.value.retryable is False
        assert info.value.returncode == 254
        assert "no matches found" in info.value.stderr


async def test_flag_like_uuid_is_refused_before_running_rkt(cli: RktCli) -> None:
    with pytest.raises(errors.PodNotFound, match="invalid pod UUID"):
        await cli.rm("--help")


async def test_ambiguous_uuid(cli: RktCli, settings: Settings, images: dict[str, Path]) -> None:
    seen: dict[str, str] = {}
    prefix = None
    for _ in range(40):  # 16 possible first digits: a collision comes quickly
        uuid = await cli.prepare(prepare_args(settings, images["sleeper"]))
        if uuid[0] in seen:
            prefix = uuid[0]
            break
        seen[uuid[0]] = uuid
    assert prefix is not None
    with pytest.raises(errors.AmbiguousUUID) as info:
        await cli.status(prefix)
    assert info.value.retryable is False


async def test_wrong_state(cli: RktCli, settings: Settings, images: dict[str, Path]) -> None:
    uuid = await cli.prepare(prepare_args(settings, images["sleeper"]))
    with pytest.raises(errors.PodWrongState) as info:
        await cli.stop(uuid)  # prepared, not running
    assert info.value.retryable is True
    with pytest.raises(errors.PodWrongState):
        await cli.enter(uuid, ["/bin/true"])
    await cli.rm(uuid)
    with pytest.raises(errors.PodNotFound):
        await cli.status(uuid)


async def test_bad_json_is_retryable_output_error(cli: RktCli, settings: Settings) -> None:
    set_faults(settings, {"list": [{"action": "garbage"}]})
    with pytest.raises(errors.RktOutputError) as info:
        await cli.list()
    assert info.value.retryable is True
    assert info.value.returncode == 0
    assert await cli.list() == []  # the fault was consumed


async def test_usage_on_stdout_is_never_parsed(cli: RktCli, settings: Settings) -> None:
    set_faults(
        settings,
        {"status": [{"action": "fail", "stdout": "Usage:\n  rkt status UUID\n", "stderr": "x"}]},
    )
    with pytest.raises(errors.RktError) as info:
        await cli.status("deadbeef")
    assert type(info.value) is errors.RktError
    assert "Usage" in info.value.stdout


async def test_timeout_kills_the_command(cli: RktCli, settings: Settings) -> None:
    set_faults(settings, {"list": [{"action": "hang", "seconds": 600}]})
    with pytest.raises(errors.RktTimeout) as info:
        await cli.list(deadline=2)
    assert info.value.retryable is True
    assert info.value.argv[-2:] == ("list", "--format=json")
    assert [p for p in sim_processes(settings, "list") if p.is_running()] == []


async def test_missing_binary(tmp_path: Path) -> None:
    settings = Settings(rkt_path=str(tmp_path / "nope"), rkt_dir=tmp_path, task_root=tmp_path)
    with pytest.raises(errors.RktUnavailable) as info:
        await RktCli(settings).version()
    assert info.value.retryable is True


async def test_unprivileged_is_unavailable(cli: RktCli, settings: Settings) -> None:
    set_faults(
        settings,
        {"prepare": [{"action": "fail", "stderr": "prepare: cannot run as unprivileged user"}]},
    )
    with pytest.raises(errors.RktUnavailable):
        await cli.prepare(["prepare", "x.aci"])


async def test_prepare_rejection_is_retryable_and_redacted(
    cli: RktCli, settings: Settings, images: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rkt_operator")
    secret = "hunter2-very-secret"
    args = prepare_args(settings, images["sleeper"], f"--environment=TOKEN={secret}")
    args.insert(3, "--port=nosuchport:8080")
    with pytest.raises(errors.PrepareError) as info:
        await cli.prepare(args, secrets={secret})
    # Retried with back-off, as a kubelet retries a container it cannot create; the task's
    # progress deadline turns it into Stalled (errors.PrepareError).
    assert info.value.retryable is True
    assert 'port name "nosuchport" could not be found' in info.value.stderr
    assert secret not in " ".join(info.value.argv)
    assert "--environment=TOKEN=***" in info.value.argv
    assert secret not in caplog.text
    assert "--environment=TOKEN=***" in caplog.text


async def test_failure_output_is_redacted_too(cli: RktCli, settings: Settings) -> None:
    secret = "s3cr3t-in-output"
    set_faults(
        settings,
        {"trust": [{"action": "fail", "stdout": f"fetched {secret}", "stderr": f"bad {secret}"}]},
    )
    with pytest.raises(errors.TrustError) as info:
        await cli.trust(["trust", f"--prefix=example.com/{secret}"], secrets={secret})
    error = info.value
    for text in (error.message, error.stdout, error.stderr, " ".join(error.argv)):
        assert secret not in text
    assert "command: rkt trust --prefix=example.com/***" in error.message
    assert "output: fetched ***; error: bad ***" in error.message


async def test_trust_failure_is_retryable_and_says_what_ran(cli: RktCli, tmp_path: Path) -> None:
    with pytest.raises(errors.TrustError) as info:
        await cli.trust(
            [
                "trust",
                "--skip-fingerprint-review",
                "--prefix=example.com/x",
                str(tmp_path / "no.gpg"),
            ]
        )
    assert info.value.retryable is True  # a key server may be unreachable for a while
    # Nomad's E7 information: the command, its output and its error.
    assert info.value.message.startswith("Error running rkt trust: exit status 254; command: rkt")
    assert "--prefix=example.com/x" in info.value.message
    assert "; output: " in info.value.message
    assert "; error: " in info.value.message
