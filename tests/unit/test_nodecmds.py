"""Argument parsing of the node-local commands (``rkt-operator exec / signal / stats``)."""

from __future__ import annotations

import signal

import pytest

from rkt_operator import cli, nodecmds
from rkt_operator.executor import logcmd
from rkt_operator.model import refs


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("team-a/web", ("team-a", "web")), ("default/x.y", ("default", "x.y"))],
)
def test_task_ref(ref: str, expected: tuple[str, str]) -> None:
    assert refs.parse_task_ref(ref) == expected


@pytest.mark.parametrize(
    "ref", ["web", "/web", "team-a/", "a/b/c", "", "Team/web", "team/We b", "a.b/web"]
)
def test_bad_task_ref(ref: str) -> None:
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        refs.parse_task_ref(ref)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HUP", signal.SIGHUP),
        ("hup", signal.SIGHUP),
        ("SIGTERM", signal.SIGTERM),
        ("usr1", signal.SIGUSR1),
        ("9", signal.SIGKILL),
        (" INT ", signal.SIGINT),
    ],
)
def test_signal_names_and_numbers(text: str, expected: signal.Signals) -> None:
    assert nodecmds.parse_signal(text) == expected


@pytest.mark.parametrize("text", ["NOPE", "SIG", "999", "-1", ""])
def test_unknown_signals(text: str) -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        nodecmds.parse_signal(text)


def test_exec_takes_the_command_after_the_double_dash() -> None:
    args = cli._parser().parse_args(
        ["exec", "--rkt-dir=/d", "ns/t", "--app=main", "--", "sh", "-c", "echo --x"]
    )
    assert (args.task, args.app, args.cmd, args.rkt_dir) == (
        "ns/t",
        "main",
        ["sh", "-c", "echo --x"],
        "/d",
    )


def test_exec_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["exec", "ns/t"])
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_bad_arguments_exit_2_before_touching_rkt(capsys: pytest.CaptureFixture[str]) -> None:
    # rkt-path points nowhere: a usage error must be reported before any rkt command.
    assert cli.main(["signal", "--rkt-path=/nonexistent/rkt", "ns/t", "NOPE"]) == 2
    assert "unknown signal" in capsys.readouterr().err
    assert cli.main(["stats", "--rkt-path=/nonexistent/rkt", "no-slash"]) == 2
    assert "NAMESPACE/NAME" in capsys.readouterr().err


def test_node_commands_take_the_uid_kubectl_rkt_passes() -> None:
    uid = "1f0e6a52-0000-4000-8000-00000000abcd"
    parser = cli._parser()
    args = parser.parse_args(["exec", "ns/t", f"--uid={uid}", "--tty", "--", "sh"])
    assert (args.uid, args.tty, args.cmd) == (uid, True, ["sh"])
    assert parser.parse_args(["signal", "ns/t", f"--uid={uid}", "--", "HUP"]).signal == "HUP"
    assert parser.parse_args(["pods", "ns/t", f"--uid={uid}"]).uid == uid
    args = parser.parse_args(["logs", "ns/t", "-p", "--since=5m", "--tail=3", "-f", "--stderr"])
    assert (args.previous, args.since, args.tail, args.follow, args.stderr) == (
        True,
        "5m",
        3,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2h", 7200), ("1.5s", 1.5), ("1h2m3s", 3723)],
)
def test_since_durations(text: str, seconds: float) -> None:
    assert logcmd.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "-5s", "5d", "1m1h", "soon"])
def test_bad_since_durations(text: str) -> None:
    with pytest.raises(ValueError, match="--since wants a duration"):
        logcmd.parse_since(text)
