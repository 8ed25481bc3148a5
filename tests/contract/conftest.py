"""Fixtures of the rkt contract suite: one behavioural suite, two executables.

``rkt`` runs every test against the simulator (``rkt-sim``) and, with ``--with-rkt`` on a
root machine, against the real rkt (``--rkt-path``). Each test gets its own ``--dir`` and
``--local-config``; pods it starts are force-stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from contractlib import GpgKey, Images, Keys, Rkt, sim_path

from rkt_devkit.aci import build_aci


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.rkt)])
def rkt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rkt]:
    """The rkt under test: the simulator always, the real rkt with ``--with-rkt``."""
    kind = request.param
    binary = sim_path() if kind == "sim" else str(request.config.getoption("--rkt-path"))
    logs = tmp_path / "logs"
    logs.mkdir()
    instance = Rkt(binary, kind, tmp_path / "data", tmp_path / "etc-rkt", logs)
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Rkt]:
    """The simulator alone, for behaviour only the simulator has (offline remotes, its log)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    instance = Rkt(sim_path(), "sim", tmp_path / "data", tmp_path / "etc-rkt", logs)
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    root = tmp_path_factory.mktemp("aci")
    sleeper = build_aci(
        root / "sleeper.aci",
        name="example.com/sleeper",
        exec=["/bin/sleep", "3600"],
        ports=[{"name": "http", "port": 8080}],
        environment={"FOO": "from-image"},
        mount_points=[{"name": "data", "path": "/data"}],
    )
    shell = build_aci(
        root / "shell.aci", name="example.com/shell", exec=["/bin/sh", "-c", "exit 0"], gzip=True
    )
    bare = build_aci(root / "bare.aci", name="example.com/bare", exec=None)
    return Images(sleeper, shell, bare)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("gpg")
    return Keys(
        GpgKey.create(root / "trusted", "builder@example.com"),
        GpgKey.create(root / "stranger", "mallory@example.org"),
    )
