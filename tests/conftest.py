"""Test tiers: everything runs by default: unit, the rkt contract suite on the simulator AND
on real rkt, the real API server tier, the agent on real rkt. Tests marked ``rkt`` need the
real rkt (see ``realrkt``): required in CI, skipped with one line elsewhere when missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest

import realrkt

# fixtures_k8s: control_plane, kubectl, kubeconfig, namespace; fixtures_sim: settings, rkt,
# executor and images for the tiers that drive the real RktCli and Executor against rkt-sim.
pytest_plugins = ["fixtures_k8s", "fixtures_sim"]
REAL_RKT = pytest.StashKey[realrkt.RealRkt]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--with-rkt",
        action="store_true",
        default=False,
        help="require the real-rkt tiers (fail instead of skipping when rkt is missing)",
    )
    parser.addoption(
        "--chaos-tasks", default="6", help="tasks in the chaos test (make chaos N=100)"
    )
    parser.addoption("--chaos-real-tasks", default="4", help="tasks in the chaos test on real rkt")
    parser.addoption("--chaos-seed", default=None, help="the chaos test's random seed")
    parser.addoption(
        "--chaos-report", default=None, help="where the chaos test writes its figures (JSON)"
    )
    parser.addoption(
        "--rkt-path",
        default=None,
        help="the real rkt binary (default: $RKT_DIR/rkt from make test)",
    )


def pytest_configure(config: pytest.Config) -> None:
    real = realrkt.find(config.getoption("--rkt-path"))
    config.stash[REAL_RKT] = real
    if real.usable and not realrkt.systemd_is_pid1():
        # rkt's host stage1 finds systemd-nspawn through PATH; on a host without systemd as
        # PID 1 the project's nspawn shim (host setup, like installing rkt) goes first.
        os.environ["PATH"] = f"{realrkt.NSPAWN_SHIM_DIR}{os.pathsep}{os.environ['PATH']}"


def pytest_report_header(config: pytest.Config) -> str:
    real = config.stash[REAL_RKT]
    return f"real rkt: {real.binary}" if real.usable else f"real rkt: none ({real.why_not})"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "rkt" not in item.keywords:
        return
    real = item.config.stash[REAL_RKT]
    if real.usable:
        return
    if realrkt.in_ci() or item.config.getoption("--with-rkt"):
        pytest.fail(f"the real-rkt tier must run here but cannot: {real.why_not}", pytrace=False)
    pytest.skip(real.why_not)


@pytest.fixture(scope="session")
def real_rkt(pytestconfig: pytest.Config) -> str:
    """The real rkt binary (tests using it carry the ``rkt`` marker)."""
    real = pytestconfig.stash[REAL_RKT]
    assert real.usable, real.why_not
    assert real.binary is not None
    return real.binary


@pytest.fixture(scope="session")
def host_left_clean() -> Iterator[None]:
    """Session-wide: the real-rkt tiers leave no netns, veth, NAT rule or mount behind."""
    before = realrkt.host_snapshot()
    yield
    left = realrkt.leftovers(before, realrkt.host_snapshot())
    assert not left, f"the real-rkt tiers left host state behind: {left}"


def _processes_under(root: str) -> list[psutil.Process]:
    """Processes whose command line names a path inside ``root`` (``root`` itself, as in
    ``--basetemp``, does not count, nor does this process or what started it)."""
    inside = root.rstrip(os.sep) + os.sep  # pytest-21/ must not match pytest-210/
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info["pid"] not in ours and any(inside in part for part in cmdline):
            found.append(proc)
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session-wide, set up first and so checked last: nothing a test started below this
    run's temporary directory (simulated or real pods, shims, agents) outlives the run. A
    leftover is killed, so it cannot pile up on the machine, and fails the run."""
    root = str(tmp_path_factory.getbasetemp())
    yield
    deadline = time.monotonic() + 15  # what was just stopped may still be exiting
    left = _processes_under(root)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _processes_under(root)
    described = []
    for proc in left:
        try:
            described.append(" ".join(proc.cmdline())[:200])
            proc.kill()
        except psutil.Error:
            continue
    assert not described, f"processes left behind by the tests (killed now): {described}"
