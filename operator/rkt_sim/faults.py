"""Fault injection for tests: ``<dir>/.sim-faults.json``, off unless that file exists.

The file maps a command path (``prepare``, ``status``, ``image list``...) or ``*`` (every
command) to a list of entries. Each invocation consults the first entry of its command's
list and then the first entry of ``*``; an entry is consumed when applied (``times``, default
1, counts down; ``times: -1`` never runs out). An entry with ``if_arg`` applies only when some
argument contains that text (otherwise it is skipped, not consumed). The file is read and
rewritten under an exclusive lock on ``<dir>/.sim-faults.lock``. Actions:

* ``fail``: print ``stderr`` (default ``<cmd>: simulated failure``) and ``stdout`` (default
  nothing), exit ``code`` (default 254) without running the command;
* ``hang``: sleep ``seconds`` (default 3600), then exit ``code`` (default 254);
* ``garbage``: print ``stdout`` (default a truncated JSON document), exit ``code`` (default 0)
  without running the command;
* ``slow``: sleep ``seconds`` (default 1), then run the command normally;
* ``crash``: kill the simulator itself with SIGKILL (before running the command).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path

TYPE_CHECKING = False  # typing costs rkt-sim start-up time: only the type checker imports it
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

FAULT_FILE = ".sim-faults.json"
LOCK_FILE = ".sim-faults.lock"
DEFAULT_GARBAGE = '{"name":"4b7a6ff1-3c0e-4a4f-9a43-2d1f2bd5e0c9","state":"runn'


def _take(entries: list[Any], args: Sequence[str]) -> dict[str, Any] | None:
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        needle = entry.get("if_arg")
        if needle is not None and not any(str(needle) in a for a in args):
            continue
        times = int(entry.get("times", 1))
        if times > 1:
            entry["times"] = times - 1
        elif times != -1:
            entries.pop(index)
        return entry
    return None


def consume(data_dir: Path, command: str, args: Sequence[str]) -> list[dict[str, Any]]:
    """Take the entries that apply to this invocation (and persist the countdown)."""
    path = data_dir / FAULT_FILE
    if not os.path.exists(path):
        return []
    with open(data_dir / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            plan = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(plan, dict):
            return []
        taken = []
        for key in (command, "*"):
            entries = plan.get(key)
            if isinstance(entries, list) and (entry := _take(entries, args)) is not None:
                taken.append(dict(entry))
        if taken:
            tmp = path.with_name(f".{FAULT_FILE}.{os.getpid()}")
            tmp.write_text(json.dumps(plan))
            tmp.replace(path)
    return taken


def apply(entries: list[dict[str, Any]], prefix: str) -> int | None:
    """Act on the taken entries; return an exit code to end with, or ``None`` to go on."""
    for entry in entries:
        action = entry.get("action")
        if action == "slow":
            time.sleep(float(entry.get("seconds", 1)))
        elif action == "fail":
            _write(sys.stdout, entry.get("stdout", ""))
            _write(sys.stderr, entry.get("stderr", f"{prefix}: simulated failure"))
            return int(entry.get("code", 254))
        elif action == "hang":
            time.sleep(float(entry.get("seconds", 3600)))
            return int(entry.get("code", 254))
        elif action == "garbage":
            _write(sys.stdout, entry.get("stdout", DEFAULT_GARBAGE))
            return int(entry.get("code", 0))
        elif action == "crash":
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return None


def _write(stream: Any, text: str) -> None:
    if text:
        with contextlib.suppress(OSError):
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()
