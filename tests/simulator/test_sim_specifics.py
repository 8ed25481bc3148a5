"""Behaviour only the simulator has: no network (remotes must be registered), its own
settings file, the pod log, the shutdown grace, and the unprivileged approximation."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from simlib import Sim

import realrkt

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def test_docker_and_https_images_fail_offline_until_registered(sim: Sim, shell_aci: Path) -> None:
    for ref in ("docker://nginx:1.13", "https://example.com/images/app.aci"):
        done = sim.run("--insecure-options=image", "prepare", "--quiet", ref)
        assert done.returncode == 254
        assert done.stderr.startswith("prepare: error finding images: ")
        assert "offline" in done.stderr
    key = sim.ok("sim-import-remote", "docker://nginx:1.13", str(shell_aci)).strip()
    assert (
        sim.ok("--insecure-options=image", "fetch", "--full", "docker://nginx:1.13").strip() == key
    )
    unsigned = sim.run("fetch", "docker://nginx:1.13")
    assert unsigned.returncode == 254
    assert "--insecure-options=image" in unsigned.stderr
    sim.ok("sim-import-remote", "https://example.com/images/app.aci", str(shell_aci))
    assert (
        sim.ok(
            "--insecure-options=image", "fetch", "--full", "https://example.com/images/app.aci"
        ).strip()
        == key
    )


def test_names_resolve_from_the_store(sim: Sim, shell_aci: Path) -> None:
    missing = sim.run("--insecure-options=image", "prepare", "--quiet", "example.com/shell:1.0.0")
    assert missing.returncode == 254
    assert "offline" in missing.stderr
    key = sim.ok("--insecure-options=image", "fetch", "--full", str(shell_aci)).strip()
    uuid = sim.ok(
        "--insecure-options=image", "prepare", "--quiet", "example.com/shell:1.0.0"
    ).strip()
    manifest = json.loads(sim.ok("cat-manifest", uuid))
    assert manifest["apps"][0]["image"]["id"] == key
    assert sim.ok("--insecure-options=image", "prepare", "--quiet", key[:12]).strip()
    wrong_version = sim.run(
        "--insecure-options=image", "prepare", "--quiet", "example.com/shell:2.0.0"
    )
    assert wrong_version.returncode == 254


def test_app_output_is_kept_in_the_pod_log(sim: Sim, shell_aci: Path) -> None:
    uuid = sim.ok(
        "--insecure-options=image",
        "prepare",
        "--quiet",
        str(shell_aci),
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo logged",
    ).strip()
    done = sim.run("run-prepared", uuid)
    assert done.returncode == 0
    assert done.stdout == "logged\n"
    assert (sim.data_dir / "pods/run" / uuid / "app.log").read_text() == "logged\n"


def test_version_and_ac_version_follow_the_sim_config(sim: Sim, shell_aci: Path) -> None:
    sim.config(rkt_version="1.26.0", appc_version="0.8.10")
    lines = sim.ok("version").splitlines()
    assert lines[0] == "rkt Version: 1.26.0"
    assert lines[1] == "appc Version: 0.8.10"
    uuid = sim.ok("--insecure-options=image", "prepare", "--quiet", str(shell_aci)).strip()
    assert json.loads(sim.ok("cat-manifest", uuid))["acVersion"] == "1.26.0"


def test_shutdown_kills_an_app_that_ignores_sigterm_after_the_grace(
    sim: Sim, shell_aci: Path
) -> None:
    sim.config(stop_grace_seconds=0.5)
    script = "trap '' TERM; echo up; while true; do sleep 1; done"
    uuid = sim.ok(
        "--insecure-options=image",
        "prepare",
        "--quiet",
        str(shell_aci),
        "--exec=/bin/sh",
        "--",
        "-c",
        script,
    ).strip()
    process = subprocess.Popen(
        sim.argv("run-prepared", uuid), stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdout is not None
    with process.stdout:
        try:
            assert process.stdout.readline() == b"up\n"
            sim.ok("stop", uuid)
            assert process.wait(timeout=60) == 0  # a stop is a clean shutdown
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    status = json.loads(sim.ok("status", "--format=json", uuid))
    assert status["apps"][0]["exit_code"] == 0


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-writable directory an unprivileged user can reach (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="rkt-sim-unprivileged-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_unprivileged_mode_runs_apps_in_the_rootfs(shell_aci: Path, open_dir: Path) -> None:
    """With ``allow_unprivileged`` a non-root user can prepare and run (the approximation)."""
    sim = Sim(open_dir / "data", open_dir / "etc-rkt")
    sim.config(allow_unprivileged=True)
    host = open_dir / "volume"
    host.mkdir()
    for path in (sim.data_dir, host):
        path.chmod(0o777)
    aci = open_dir / "shell.aci"
    shutil.copy(shell_aci, aci)
    aci.chmod(0o644)
    as_nobody = [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_nobody, *sim.argv(*args)], capture_output=True, text=True, timeout=120, check=False
        )

    prepared = run(
        "--insecure-options=image",
        "prepare",
        "--quiet",
        f"--volume=out,kind=host,source={host}",
        str(aci),
        "--mount=volume=out,target=/out",
        "--exec=/bin/sh",
        "--",
        "-c",
        "pwd > out/cwd; id -u > out/uid",
    )
    assert prepared.returncode == 0, prepared.stderr
    uuid = prepared.stdout.strip()
    done = run("run-prepared", uuid)
    assert done.returncode == 0, done.stderr
    assert (host / "uid").read_text().strip() == "65534"
    assert (
        (host / "cwd").read_text().strip().endswith(f"{uuid}/stage1/rootfs/opt/stage2/shell/rootfs")
    )


def test_unprivileged_use_is_refused_by_default(sim: Sim, tmp_path: Path) -> None:
    realrkt.require_root("switching to an unprivileged user", "setpriv")
    tmp_path.chmod(0o777)
    done = subprocess.run(
        [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", *sim.argv("prepare", "x")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 254
    assert done.stderr == "prepare: cannot run as unprivileged user\n"


def test_debug_reports_stage1_progress(sim: Sim, shell_aci: Path) -> None:
    uuid = sim.ok("--insecure-options=image", "prepare", "--quiet", str(shell_aci)).strip()
    done = sim.run("--debug", "run-prepared", uuid)
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert any(line.startswith("stage1: network default: eth0 172.16.28.") for line in lines)
    assert any(line.startswith('stage1: started app "shell": /bin/sh -c exit 0') for line in lines)
    quiet = sim.run(
        "run-prepared",
        sim.ok("--insecure-options=image", "prepare", "--quiet", str(shell_aci)).strip(),
    )
    assert quiet.stderr == ""
