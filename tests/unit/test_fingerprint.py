"""rkt_operator.fingerprint: pure probes and labels (tables), and fingerprint() against
binaries that are not a usable rkt (missing, failing, printing nothing)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from rkt_operator import errors, fingerprint
from rkt_operator.rkt import parse
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rkt"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def probes_for(
    version_text: str, *, euid: int = 0, volumes: bool = True
) -> fingerprint.Fingerprint:
    settings = Settings(volumes_enabled=volumes)
    try:
        version = fingerprint.probe_version(parse.parse_version(version_text))
    except errors.RktOutputError as exc:
        version = fingerprint.probe_version_error(exc)
    root = fingerprint.probe_root(euid)
    if not root.ok:
        return fingerprint.combine([root])
    return fingerprint.combine([root, version, fingerprint.probe_volumes(settings)])


@pytest.mark.parametrize(
    ("text", "detected", "healthy", "description"),
    [
        pytest.param(
            (FIXTURES / "version.txt").read_text(),
            True,
            True,
            "rkt 1.30.0 (appc 0.8.11) is usable",
            id="release-1.30.0",
        ),
        pytest.param(
            (FIXTURES / "version-dev.txt").read_text(),
            True,
            True,
            "rkt 1.30.0 (appc 0.8.11) is usable",
            id="dev-build",
        ),
        pytest.param(
            "rkt Version: 1.27.0\nappc Version: 0.8.10\n",
            True,
            True,
            "rkt 1.27.0 (appc 0.8.10) is usable",
            id="exactly-minimum",
        ),
        pytest.param(
            (FIXTURES / "version-old.txt").read_text(),
            True,
            False,
            "unsupported rkt version 1.25.0; please upgrade to >= 1.27.0",
            id="too-old",
        ),
        pytest.param(
            "rkt version 0.8.1\nappc version 1.2.0\n",
            True,
            False,
            "unsupported rkt version 0.8.1; please upgrade to >= 1.27.0",
            id="nomad-S1-legacy-form",
        ),
        pytest.param(
            "rkt Version: 1.26.9\nappc Version: 0.8.11\n",
            True,
            False,
            "unsupported rkt version 1.26.9; please upgrade to >= 1.27.0",
            id="semantic-not-lexical",
        ),
        pytest.param(
            "hello\n",
            False,
            False,
            "Unable to parse Rkt version string: 'hello\\n'",
            id="unparseable",
        ),
    ],
)
def test_version_table(text: str, detected: bool, healthy: bool, description: str) -> None:
    fp = probes_for(text)
    assert (fp.detected, fp.healthy, fp.description) == (detected, healthy, description)


def test_healthy_attributes_like_nomad() -> None:
    fp = probes_for((FIXTURES / "version.txt").read_text())
    assert fp.attributes == {
        "driver.rkt": "1",
        "driver.rkt.version": "1.30.0",
        "driver.rkt.appc.version": "0.8.11",
        "driver.rkt.volumes.enabled": "1",
    }


def test_volumes_disabled_is_not_advertised() -> None:
    fp = probes_for((FIXTURES / "version.txt").read_text(), volumes=False)
    assert fp.healthy
    assert "driver.rkt.volumes.enabled" not in fp.attributes
    assert fingerprint.node_labels(fp)[fingerprint.LABEL_VOLUMES] is None


def test_not_root_disables_before_anything_else() -> None:
    fp = probes_for((FIXTURES / "version.txt").read_text(), euid=1000)
    assert fp == fingerprint.Fingerprint(
        detected=False, healthy=False, description="must run as root user, disabling", attributes={}
    )


def test_too_old_keeps_versions_but_not_driver_flag() -> None:
    fp = probes_for((FIXTURES / "version-old.txt").read_text())
    assert fp.attributes == {"driver.rkt.version": "1.25.0", "driver.rkt.appc.version": "0.8.10"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            (FIXTURES / "version.txt").read_text(),
            {
                "rktoperator.io/rkt": "true",
                "rktoperator.io/rkt.version": "1.30.0",
                "rktoperator.io/appc.version": "0.8.11",
                "rktoperator.io/volumes.enabled": "true",
            },
            id="healthy",
        ),
        pytest.param(
            (FIXTURES / "version-old.txt").read_text(),
            {
                "rktoperator.io/rkt": "false",
                "rktoperator.io/rkt.version": "1.25.0",
                "rktoperator.io/appc.version": "0.8.10",
                "rktoperator.io/volumes.enabled": None,
            },
            id="too-old",
        ),
        pytest.param(
            "garbage",
            {
                "rktoperator.io/rkt": "false",
                "rktoperator.io/rkt.version": None,
                "rktoperator.io/appc.version": None,
                "rktoperator.io/volumes.enabled": None,
            },
            id="unusable",
        ),
        pytest.param(
            "rkt Version: 1.30.0rc1+gitabc\nappc Version: 0.8.11\n",
            {
                "rktoperator.io/rkt": "true",
                "rktoperator.io/rkt.version": "1.30.0rc1",
                "rktoperator.io/appc.version": "0.8.11",
                "rktoperator.io/volumes.enabled": "true",
            },
            id="pre-release",
        ),
    ],
)
def test_node_labels(text: str, expected: dict[str, str | None]) -> None:
    labels = fingerprint.node_labels(probes_for(text))
    assert labels == expected
    assert set(labels) == set(fingerprint.LABELS)
    for value in labels.values():
        assert value is None or (len(value) <= 63 and LABEL_VALUE.match(value))


def test_label_values_never_invalid() -> None:
    fp = fingerprint.Fingerprint(
        detected=True,
        healthy=True,
        description="",
        attributes={"driver.rkt.version": "1.0.0+weird/stuff", "driver.rkt.appc.version": "x" * 64},
    )
    labels = fingerprint.node_labels(fp)
    assert labels["rktoperator.io/rkt.version"] is None
    assert labels["rktoperator.io/appc.version"] is None


# ------------------------------------------------------------------ fingerprint() with I/O


async def run_fingerprint(rkt_path: str, tmp_path: Path, euid: int = 0) -> fingerprint.Fingerprint:
    settings = Settings(rkt_path=rkt_path, rkt_dir=tmp_path / "rkt", rkt_local_config=tmp_path)
    return await fingerprint.fingerprint(settings, RktCli(settings), euid=euid)


async def test_missing_binary_is_reported_not_raised(tmp_path: Path) -> None:
    fp = await run_fingerprint(str(tmp_path / "no-such-rkt"), tmp_path)
    assert not fp.detected
    assert not fp.healthy
    assert fp.description.startswith("Failed to execute rkt version: cannot execute rkt binary")
    assert fingerprint.node_labels(fp)[fingerprint.LABEL_RKT] == "false"


async def test_failing_binary_is_reported(tmp_path: Path) -> None:
    false = shutil.which("false")
    assert false is not None
    fp = await run_fingerprint(false, tmp_path)
    assert not fp.healthy
    assert fp.description.startswith("Failed to execute rkt version: rkt version failed")


async def test_silent_binary_is_unparseable(tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    fp = await run_fingerprint(true, tmp_path)
    assert not fp.detected
    assert fp.description == "Unable to parse Rkt version string"


async def test_non_root_does_not_run_rkt(tmp_path: Path) -> None:
    # A binary that does not exist would be reported as such if it were run.
    fp = await run_fingerprint(str(tmp_path / "no-such-rkt"), tmp_path, euid=1000)
    assert fp.description == "must run as root user, disabling"
