"""The agent's process runs without the ``kubernetes`` client package: ``rkt-operator run``
keeps kopf from importing it (18 MiB), and nothing the agent imports needs it. Checked in a
fresh interpreter, as the console script starts one; the agent tier runs the real command."""

from __future__ import annotations

import json
import subprocess
import sys

LOADED = """
import json, sys
{prepare}
import kopf
from rkt_operator import kopfapp, logconfig, settings
registry = kopfapp.build_registry(settings.load(environ={{"NODE_NAME": "n1"}}))
print(json.dumps({{
    "kubernetes": sorted(
        name for name, module in sys.modules.items()
        if name.split(".")[0] == "kubernetes" and module is not None
    ),
    "registry": type(registry).__name__,
}}))
"""


def _loaded(prepare: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(prepare=prepare)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_agent_runs_its_wiring_without_the_kubernetes_package() -> None:
    guarded = _loaded("from rkt_operator import cli; cli._without_the_kubernetes_client()")
    assert guarded["kubernetes"] == []
    assert guarded["registry"] == "OperatorRegistry"


def test_without_the_guard_kopf_would_load_it() -> None:
    """What the guard is for: kopf imports the package whenever it is installed."""
    unguarded = _loaded("")
    assert "kubernetes.client" in unguarded["kubernetes"]  # type: ignore[operator]
