"""The CLI surface: version, missing command, flag errors, global flags anywhere."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from contractlib import Rkt

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def test_version_prints_five_key_value_lines(rkt: Rkt) -> None:
    done = rkt.run("version")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "rkt Version",
        "appc Version",
        "Go Version",
        "Go OS/Arch",
        "Features",
    ]
    assert re.fullmatch(r"rkt Version: \d+\.\d+\.\d+(\+git[0-9a-f]+(-dirty)?)?", lines[0])
    assert re.fullmatch(r"appc Version: \d+\.\d+\.\d+", lines[1])
    assert re.fullmatch(r"Features: ([+-][A-Z]+ ?)+", lines[4])


def test_missing_subcommand_exits_2(rkt: Rkt) -> None:
    done = rkt.run()
    assert done.returncode == 2
    assert "missing command" in done.stderr


def test_unknown_flag_is_a_generic_failure(rkt: Rkt) -> None:
    done = rkt.run("status", "--no-such-flag", "abc")
    assert done.returncode == 254
    assert done.stderr == "Error: unknown flag: --no-such-flag\n\n"
    assert_usage_of("status", done.stdout)


def test_global_flags_work_after_the_subcommand(rkt: Rkt) -> None:
    done = rkt.run("list", "--format=json", f"--dir={rkt.data_dir}", "--debug")
    assert done.returncode == 0
    assert done.stdout.strip() == "null"


def test_status_without_uuid_prints_usage_on_stdout(rkt: Rkt) -> None:
    done = rkt.run("status")
    assert done.returncode == 254
    assert_usage_of("status", done.stdout)


def test_help_prints_usage_and_succeeds(rkt: Rkt) -> None:
    done = rkt.run("list", "--help")
    assert done.returncode == 0
    assert_usage_of("list", done.stdout)


def assert_usage_of(command: str, stdout: str) -> None:
    """rkt's usage layout (its own usage function, on stdout): NAME, USAGE, ..., GLOBAL OPTIONS."""
    assert stdout.startswith(f"NAME:\n\t{command} - "), stdout
    assert f"\n\nUSAGE:\n\trkt {command}" in stdout, stdout
    assert "\n\nGLOBAL OPTIONS:\n" in stdout, stdout
    assert "      --dir" in stdout.split("GLOBAL OPTIONS:")[1]


@pytest.mark.parametrize("command", ["prepare", "run-prepared", "enter", "rm", "gc"])
def test_root_only_commands_refuse_an_unprivileged_user(rkt: Rkt, command: str) -> None:
    rkt.data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", *rkt.argv(command, "x")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 254
    assert done.stderr.strip().endswith(f"{command}: cannot run as unprivileged user")


def test_root_only_command_runs_as_root(rkt: Rkt) -> None:
    done = rkt.run("gc", "--grace-period=0s")
    assert done.returncode == 0
    assert "cannot run as unprivileged user" not in done.stderr
