"""Fixtures of the simulator-only tests: a private rkt-sim store and test images."""

from __future__ import annotations

from pathlib import Path

import pytest
from simlib import Sim

from rkt_devkit.aci import build_aci


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "data", tmp_path / "etc-rkt")


@pytest.fixture(scope="session")
def shell_aci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim-aci")
    return build_aci(root / "shell.aci", name="example.com/shell", exec=["/bin/sh", "-c", "exit 0"])
