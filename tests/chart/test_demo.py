"""``make demo`` end to end: the demo module run as the Makefile runs it, with and without
``--keep``. It starts its own control plane, agents and simulated pods, so each test checks
that nothing is left running afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from chartlib import REPO

EXAMPLES = REPO / "examples"


def _expected_tasks() -> dict[str, str]:
    """Every RktTask in examples/ and the phase the demo waits for."""
    tasks: dict[str, str] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "RktTask":
                service = doc["spec"].get("restartPolicy", "Always") == "Always"
                tasks[doc["metadata"]["name"]] = "Running" if service else "Succeeded"
    return tasks


def _demo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rkt_devkit.demo", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
    )  # fmt: skip


def _table_rows(output: str) -> dict[str, list[str]]:
    table = output.split("$ kubectl get rkttasks -A -o wide\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.split() for line in table.splitlines()]
    header = lines[0]
    assert header[:2] == ["NAMESPACE", "NAME"], header
    return {row[1]: row for row in lines[1:] if len(row) > 2}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _assert_table(output: str) -> None:
    rows = _table_rows(output)
    expected = _expected_tasks()
    assert set(rows) == set(expected)
    for name, phase in expected.items():
        assert phase in rows[name], (name, rows[name])
    kv = " ".join(rows["kv-server"])
    assert "node-a" in kv
    # The example without nodeName was bound by the binder to the only node with disk=ssd.
    assert "node-b" in rows["web-placed"], rows["web-placed"]
    # A pod UUID and an IP address are visible for the service.
    assert any(len(cell) == 36 and cell.count("-") == 4 for cell in rows["kv-server"]), kv
    assert any(cell.count(".") == 3 for cell in rows["kv-server"]), kv


def test_demo_runs_every_example_and_cleans_up(kubebuilder_assets: Path, tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    done = _demo("--assets", str(kubebuilder_assets), "--dir", str(directory))
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_table(done.stdout)
    assert "nothing left running" in done.stdout
    assert not directory.exists()


def test_demo_keep_leaves_it_running_until_stop(kubebuilder_assets: Path, tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    pids: list[int] = []
    done = _demo("--assets", str(kubebuilder_assets), "--dir", str(directory), "--keep")
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        _assert_table(done.stdout)
        kubeconfig = directory / "cluster" / "kubeconfig"
        assert f"kubeconfig: {kubeconfig}" in done.stdout
        assert f"--stop {directory}" in done.stdout
        state = json.loads((directory / "demo.json").read_text())
        pids = list(state["agents"].values())
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
        listed = subprocess.run(
            [str(kubebuilder_assets / "kubectl"), f"--kubeconfig={kubeconfig}", "get", "rkt",
             "-o", "name"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        assert len(listed.stdout.split()) == len(_expected_tasks())
    finally:
        stopped = _demo("--stop", str(directory))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "nothing left running" in stopped.stdout
    assert not any(_alive(pid) for pid in pids)
    assert not directory.exists()
