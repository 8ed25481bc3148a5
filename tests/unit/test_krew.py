"""The krew package of ``kubectl rkt`` (``rkt_devkit.krew``): the committed manifest names the
archive a fresh build makes, byte for byte, and the plugin in it runs on a bare Python."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from rkt_devkit import krew


def test_manifest_matches_a_fresh_build() -> None:
    data = krew.archive()
    assert data == krew.archive(), "the archive must be reproducible"
    committed = krew.MANIFEST.read_text()
    template = krew.template_of(committed)
    sha256 = hashlib.sha256(data).hexdigest()
    assert committed == krew.manifest(krew.version(), sha256, template), "run `make krew`"
    doc = yaml.safe_load(committed)
    assert (doc["apiVersion"], doc["kind"]) == (
        "krew.googlecontainertools.github.com/v1alpha2",
        "Plugin",
    )
    assert doc["metadata"]["name"] == "rkt"  # so kubectl finds it as `kubectl rkt`
    [platform] = doc["spec"]["platforms"]
    assert platform["bin"] == "kubectl-rkt"
    assert platform["sha256"] == sha256
    assert platform["uri"] == krew.release_url(krew.version(), template)
    # The uri is a release's address: the manifest says it answers only once that release
    # is published, and how to install from the local build meanwhile.
    assert template == krew.URL_TEMPLATE
    assert platform["uri"].endswith(f"/v{krew.version()}/kubectl-rkt-v{krew.version()}.zip")
    assert f"--manifest=krew/rkt.yaml --archive=dist/kubectl-rkt-v{krew.version()}.zip" in committed


def test_the_uri_template_is_filled_in_and_must_be_https() -> None:
    custom = "https://downloads.example/rkt/{version}/{archive}"
    text = krew.manifest("9.8.7", "0" * 64, custom)
    assert krew.template_of(text) == custom
    [platform] = yaml.safe_load(text)["spec"]["platforms"]
    assert platform["uri"] == "https://downloads.example/rkt/9.8.7/kubectl-rkt-v9.8.7.zip"
    with pytest.raises(ValueError, match="https"):
        krew.release_url("1.0.0", "http://plain/{archive}")


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
