"""The detached supervisor (``python -m rkt_operator.executor.shim``) with real processes.

Uses /bin/sh as the supervised command: what is under test is the supervisor (claim, detach,
record, forward), not rkt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from rkt_operator.executor import files, launcher

UUID = "5d3c2b1a-9e8f-4a7b-8c6d-0e1f2a3b4c5d"


def run_shim(root: Path, command: list[str]) -> str:
    argv = launcher.shim_argv(command, root, UUID)
    done = subprocess.run(
        argv, cwd=root, capture_output=True, text=True, timeout=60, start_new_session=True
    )
    return done.stdout.strip()


def wait_for(predicate: object, seconds: float = 30.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_records_exit_code_and_output(tmp_path: Path) -> None:
    line = run_shim(tmp_path, ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"])
    assert line.startswith("started ")
    exit_path = files.exit_file(tmp_path, UUID)
    wait_for(exit_path.exists)
    record = files.read_exit(exit_path)
    assert record is not None
    assert record.exit_code == 7
    stdout, stderr = files.log_files(tmp_path, UUID)
    assert stdout.read_text() == "out\n"
    assert stderr.read_text() == "err\n"


def test_supervisor_is_detached_and_claims_once(tmp_path: Path) -> None:
    line = run_shim(tmp_path, ["/bin/sh", "-c", "sleep 30"])
    _, shim_pid, child_pid = line.split()
    shim = psutil.Process(int(shim_pid))
    try:
        # Not a child of this process: the launcher's process exited and the supervisor
        # was re-parented; it has its own session.
        assert shim.ppid() != os.getpid()
        assert os.getsid(int(shim_pid)) == int(shim_pid)
        assert psutil.Process(int(child_pid)).ppid() == int(shim_pid)
        assert files.marker_alive(files.launch_marker(tmp_path, UUID))
        # A second launch of the same pod starts nothing.
        assert run_shim(tmp_path, ["/bin/sh", "-c", "exit 99"]) == "already-launched"
        assert not files.exit_file(tmp_path, UUID).exists()
    finally:
        os.kill(int(child_pid), signal.SIGKILL)
    wait_for(files.exit_file(tmp_path, UUID).exists)
    record = files.read_exit(files.exit_file(tmp_path, UUID))
    assert record is not None
    assert record.exit_code == 137
    wait_for(lambda: not psutil.pid_exists(int(shim_pid)) or _zombie(int(shim_pid)))


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_to_supervisor_is_forwarded(tmp_path: Path) -> None:
    script = "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"
    line = run_shim(tmp_path, ["/bin/sh", "-c", script])
    shim_pid = int(line.split()[1])
    stdout = files.log_files(tmp_path, UUID)[0]
    wait_for(lambda: "ready" in stdout.read_text())
    os.kill(shim_pid, signal.SIGTERM)
    wait_for(files.exit_file(tmp_path, UUID).exists)
    record = files.read_exit(files.exit_file(tmp_path, UUID))
    assert record is not None
    assert record.exit_code == 0
    assert "got-term" in stdout.read_text()


def test_missing_command_reports_error_and_releases_claim(tmp_path: Path) -> None:
    line = run_shim(tmp_path, [str(tmp_path / "no-such-binary")])
    assert line.startswith("error cannot run")
    assert not files.launch_marker(tmp_path, UUID).exists()
    assert not files.exit_file(tmp_path, UUID).exists()


def test_runs_under_this_interpreter() -> None:
    assert launcher.shim_argv(["x"], Path("/"), UUID)[0] == sys.executable


def test_foreground_mode_supervises_in_process(tmp_path: Path) -> None:
    # As a systemd unit's main process: no fork, returns when the pod's process ends.
    argv = launcher.shim_argv(["/bin/sh", "-c", "exit 5"], tmp_path, UUID, foreground=True)
    assert "--foreground" in argv
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    _, shim_pid, _ = done.stdout.split()
    assert int(shim_pid) > 0
    record = files.read_exit(files.exit_file(tmp_path, UUID))
    assert record is not None
    assert record.exit_code == 5
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() == "already-launched"
