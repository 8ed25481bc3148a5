"""The krew package of ``kubectl rkt`` (``rkt_devkit.krew``): the committed manifest names the
archive a fresh build makes, byte for byte, and the plugin in it runs on a bare Python."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from rkt_devkit import krew


def test_manifest_matches_a_fresh_build() -> None:
    data = krew.archive()
    assert data == krew.archive(), "the archive must be reproducible"
    committed = krew.MANIFEST.read_text()
    assert committed == krew.manifest(krew.version(), hashlib.sha256(data).hexdigest()), (
        "run `make krew`"
    )
    doc = yaml.safe_load(committed)
    assert (doc["apiVersion"], doc["kind"]) == (
        "krew.googlecontainertools.github.com/v1alpha2",
        "Plugin",
    )
    assert doc["metadata"]["name"] == "rkt"  # so kubectl finds it as `kubectl rkt`
    [platform] = doc["spec"]["platforms"]
    assert platform["bin"] == "kubectl-rkt"
    assert platform["uri"].endswith(f"/v{krew.version()}/kubectl-rkt-v{krew.version()}.zip")


def test_the_archived_plugin_runs_on_python_alone(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(krew.archive())) as archive:
        [info] = archive.infolist()
        assert info.filename == "kubectl-rkt"
        assert (info.external_attr >> 16) & 0o777 == 0o755
        plugin = tmp_path / "kubectl-rkt"
        plugin.write_bytes(archive.read(info))
    # -I: no site-packages, no environment, no current directory: the standard library only.
    done = subprocess.run(
        [sys.executable, "-I", str(plugin), "logs", "web", "--tail=-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (2, "error: --tail must not be negative: -1\n")
    done = subprocess.run(
        [sys.executable, "-I", str(plugin), "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert "logs" in done.stdout
    assert "describe" in done.stdout
