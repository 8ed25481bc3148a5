"""krew installs ``kubectl rkt`` from the repository's manifest (``krew/rkt.yaml``) and the
archive ``make krew`` builds, as a user would install it before a release is published:
``kubectl krew install --manifest=krew/rkt.yaml --archive=dist/kubectl-rkt-v<version>.zip``.

Real krew (``.ci/krew.sh`` builds it; ``make test`` exports ``KREW_BIN``) and the real kubectl
of the test assets, into a throw-away ``KREW_ROOT``. Needs no cluster: ``kubectl plugin list``
and ``kubectl rkt --help`` run locally. Part of the default suite: without ``KREW_BIN`` it
fails and says how to get krew, like the control-plane binaries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rkt_devkit import krew

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def krew_bin() -> Path:
    value = os.environ.get("KREW_BIN", "")
    if not value:  # like the control-plane binaries: part of the default suite, never skipped
        pytest.fail(
            "KREW_BIN is not set: run the tests with `make test`, or "
            "`export $(bash .ci/krew.sh | tail -n1)` first (it builds or finds krew)",
            pytrace=False,
        )
    return Path(value)


def test_krew_installs_the_plugin_from_the_manifest_and_the_built_archive(
    krew_bin: Path, kubebuilder_assets: Path, tmp_path: Path
) -> None:
    # `make krew`'s own step, into a folder of the test: the committed manifest is exactly
    # what it writes (so its sha256 is the archive's), and the archive is what krew unpacks.
    committed = krew.MANIFEST.read_text()
    built = tmp_path / "rkt.yaml"
    subprocess.run(
        [sys.executable, "-m", "rkt_devkit.krew", "--out", str(tmp_path / "dist"),
         "--manifest", str(built), "--url-template", krew.template_of(committed)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert built.read_text() == committed, "run `make krew`"
    archive = tmp_path / "dist" / krew.archive_name(krew.version())
    # PATH: krew's bin folder, `kubectl krew`, kubectl and the system (python3): not the
    # virtualenv, whose kubectl-rkt (installed by pip) would stand in for krew's.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "kubectl-krew").symlink_to(krew_bin)
    root = tmp_path / "krew-root"
    env = {
        "PATH": os.pathsep.join(
            [str(root / "bin"), str(tools), str(kubebuilder_assets), "/usr/bin", "/bin"]
        ),
        "HOME": str(tmp_path / "home"),
        "KREW_ROOT": str(root),
        "KREW_NO_UPGRADE_CHECK": "1",  # no look for a newer krew (no network)
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), env=env, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    # krew checks the archive against the manifest's sha256: a changed byte is refused.
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(archive.read_bytes() + b"\0")
    refused = run("kubectl", "krew", "install", f"--manifest={krew.MANIFEST}",
                  f"--archive={tampered}")  # fmt: skip
    assert refused.returncode != 0
    assert "checksum does not match" in refused.stderr, refused.stderr
    assert not (root / "bin" / "kubectl-rkt").exists()

    done = run("kubectl", "krew", "install", f"--manifest={krew.MANIFEST}", f"--archive={archive}")
    assert done.returncode == 0, done.stderr
    assert "Installed plugin: rkt" in done.stdout + done.stderr, done.stdout + done.stderr
    listed = run("kubectl", "plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(root / "bin" / "kubectl-rkt") in listed.stdout.splitlines(), listed.stdout
    assert "warning" not in listed.stderr.lower(), listed.stderr  # e.g. a shadowed plugin
    helped = run("kubectl", "rkt", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: kubectl rkt "), helped.stdout
    for command in ("logs", "exec", "signal", "stats", "describe"):
        assert command in helped.stdout
    # The installed plugin parses as the packaged one does (no cluster is reached).
    bad = run("kubectl", "rkt", "logs", "web", "--tail=-1")
    assert (bad.returncode, bad.stderr) == (2, "error: --tail must not be negative: -1\n")
