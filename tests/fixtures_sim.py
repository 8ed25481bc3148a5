"""Fixtures for the tiers on rkt-sim (tests/executor, tests/rktcli, tests/reconcile,
tests/observability): the real ``RktCli`` and ``Executor`` driving ``rkt-sim`` (as root) in a
per-test data directory, and test ACIs built with ``build_aci``. A plugin of the root
conftest; a directory's own conftest may override any of these fixtures.

Every test leaves no process behind: pods still running at the end are force-stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rkt_devkit.aci import build_aci
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import TRAP_TERM, TRAP_USR1, force_stop_all, kill_leftovers, make_settings


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small busybox ACIs: a sleeper with named ports, a TERM-ignoring app, a USR1 handler,
    an app that exits 3 at once."""
    out = tmp_path_factory.mktemp("images")
    return {
        "sleeper": build_aci(
            out / "sleeper.aci",
            name="example.com/sleeper",
            exec=("/bin/sleep", "3600"),
            ports=[{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}],
        ),
        "trapper": build_aci(
            out / "trapper.aci", name="example.com/trapper", exec=("/bin/sh", "-c", TRAP_TERM)
        ),
        "usr1": build_aci(
            out / "usr1.aci", name="example.com/usr1", exec=("/bin/sh", "-c", TRAP_USR1)
        ),
        "exit3": build_aci(
            out / "exit3.aci", name="example.com/exit3", exec=("/bin/sh", "-c", "exit 3")
        ),
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def rkt(settings: Settings) -> AsyncIterator[RktCli]:
    cli = RktCli(settings)
    yield cli
    await force_stop_all(cli)
    kill_leftovers(settings)


@pytest.fixture
def executor(settings: Settings, rkt: RktCli) -> Executor:
    return Executor(settings=settings, rkt=rkt)
