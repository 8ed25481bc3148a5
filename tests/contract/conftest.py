"""Fixtures of the rkt contract suite: one behavioural suite, two executables.

``rkt`` runs every test against the simulator (``rkt-sim``) and against the real rkt (host
flavor, as root; see ``tests/realrkt.py``). Each test gets its own ``--dir`` and
``--local-config``; every pod it made is stopped and removed afterwards, and the real tier
must leave no network namespace, veth, NAT rule or mount behind (``host_left_clean``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from contractlib import GpgKey, Images, Keys, Rkt, sim_path

import realrkt
from rkt_devkit.aci import build_aci
from rkt_devkit.netd import UserNetworks


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.rkt)])
def rkt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rkt]:
    """The rkt under test: the simulator, and the real rkt (host flavor, as root)."""
    kind = request.param
    if kind == "real":
        request.getfixturevalue("host_left_clean")
    binary = sim_path() if kind == "sim" else request.getfixturevalue("real_rkt")
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
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    root = tmp_path_factory.mktemp("gpg")
    made = Keys(
        GpgKey.create(root / "trusted", "builder@example.com"),
        GpgKey.create(root / "stranger", "mallory@example.org"),
        GpgKey.create(root / "eddsa", "modern@example.net", algorithm="ed25519"),
    )
    yield made
    for key in (made.trusted, made.stranger, made.eddsa):
        key.close()


@pytest.fixture
def host_net_conf(rkt: Rkt) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """Write a CNI network into the host's /etc/rkt/net.d for one test, then remove it (and
    the bridge a bridge network leaves, which rkt's teardown does not delete)."""
    realrkt.require_root("writing /etc/rkt/net.d")
    networks = UserNetworks()

    def write(name: str, conf: dict[str, Any]) -> None:
        networks.write(name, conf)

    yield write
    rkt.cleanup()  # the pods go first: their teardown needs the network's configuration
    networks.remove()
