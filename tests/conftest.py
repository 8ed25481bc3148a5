"""Test tiers: everything runs by default (unit, simulator contract, the real API server tier),
except tests marked ``rkt`` that need a real rkt binary and root: opt in with ``--with-rkt``.
"""

from __future__ import annotations

import pytest

# fixtures_k8s: control_plane, kubectl, kubeconfig, namespace; fixtures_sim: settings, rkt,
# executor and images for the tiers that drive the real RktCli and Executor against rkt-sim.
pytest_plugins = ["fixtures_k8s", "fixtures_sim"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--with-rkt",
        action="store_true",
        default=False,
        help="also run the tier that needs a real rkt binary (on PATH or --rkt-path) and root",
    )
    parser.addoption("--rkt-path", default="rkt", help="the real rkt binary for --with-rkt")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--with-rkt"):
        return
    skip_real = pytest.mark.skip(reason="needs a real rkt binary and root: run with --with-rkt")
    for item in items:
        if "rkt" in item.keywords:
            item.add_marker(skip_real)
