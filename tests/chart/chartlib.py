"""Shared by the chart tests: where the chart lives, the helm/render callables' shapes, a
lookup of one rendered object by kind, and the shipped Argo CD health check run as Argo CD
runs it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rkt-operator"

Helm = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]


def find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of ``kind`` among ``objects``."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


HEALTH_LUA = CHART / "health" / "argocd-health.lua"


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health script as Argo CD does: Lua 5.1 (gopher-lua's dialect), a fresh state,
    the object's JSON as nested tables (arrays from 1) in the global ``obj``, and a returned
    table with ``status`` and ``message``."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(HEALTH_LUA.read_text())
    assert result is not None, "the script must return a table"
    return str(result["status"]), str(result["message"])
