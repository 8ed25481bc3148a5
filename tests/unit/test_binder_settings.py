"""``rkt-operator schedule`` settings: defaults, the downward-API variables, flags winning, and
refused combinations (exit code 2 with the field named, before any API call)."""

from __future__ import annotations

import argparse

import pytest

from rkt_operator import cli, settings


def test_defaults_and_downward_api_variables() -> None:
    loaded = settings.load_binder(environ={"POD_NAMESPACE": "rkt", "POD_NAME": "binder-7f9-x"})
    assert loaded.lease_namespace == "rkt"
    assert loaded.identity == "binder-7f9-x"
    assert loaded.strategy == "spread"
    assert loaded.lease_name == "rkt-operator-binder"
    assert loaded.renew_deadline_seconds < loaded.lease_duration_seconds
    assert loaded.bind_workers == 8


def test_without_pod_name_the_identity_is_host_and_pid() -> None:
    loaded = settings.load_binder(environ={})
    assert loaded.lease_namespace == "default"
    assert loaded.identity.rsplit("-", 1)[1].isdigit()


def test_flags_win_over_the_environment() -> None:
    parser = settings.build_binder_parser(argparse.ArgumentParser())
    args = parser.parse_args(
        ["--strategy=binpack", "--lease-namespace=ops", "--identity=b2", "--bind-workers=2"]
    )
    loaded = settings.load_binder(args, environ={"POD_NAMESPACE": "rkt", "POD_NAME": "p"})
    assert (loaded.strategy, loaded.lease_namespace, loaded.identity) == ("binpack", "ops", "b2")
    assert loaded.bind_workers == 2


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--strategy=random"], "strategy"),
        (["--lease-duration-seconds=5", "--renew-deadline-seconds=5"], "renew_deadline_seconds"),
        (["--retry-period-seconds=0"], "retry_period_seconds"),
        (["--bind-workers=0"], "bind_workers"),
    ],
)
def test_bad_settings_exit_2_naming_the_field(
    flags: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["schedule", *flags]) == 2
    assert field in capsys.readouterr().err
