"""Shared by the chart tests: where the chart lives, the helm/render callables' shapes, and a
lookup of one rendered object by kind."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rkt-operator"

Helm = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]


def find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of ``kind`` among ``objects``."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
