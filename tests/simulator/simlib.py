"""Running ``rkt-sim`` in a private data directory for the simulator-only tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def sim_path() -> str:
    beside = Path(sys.executable).parent / "rkt-sim"
    found = str(beside) if beside.exists() else shutil.which("rkt-sim")
    assert found, "rkt-sim is not installed: run .venv/bin/pip install -e ."
    return found


@dataclass
class Sim:
    data_dir: Path
    local_config: Path

    def argv(self, *args: str) -> list[str]:
        return [sim_path(), f"--dir={self.data_dir}", f"--local-config={self.local_config}", *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"{args}: rc={done.returncode} stderr={done.stderr!r}"
        return done.stdout

    def faults(self, plan: dict[str, Any]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / ".sim-faults.json").write_text(json.dumps(plan))

    def remaining_faults(self) -> Any:
        return json.loads((self.data_dir / ".sim-faults.json").read_text())

    def config(self, **values: Any) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / ".sim-config.json").write_text(json.dumps(values))
