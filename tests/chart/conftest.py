"""Fixtures for the chart tests: the real helm binary (from the assets folder, with its own
throw-away home so user configuration never leaks in) and a renderer for the chart."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, Helm, Render


@pytest.fixture(scope="session")
def helm(kubebuilder_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """``helm(*args, check=True)``: run helm with a private HOME and HELM_*_HOME."""
    binary = kubebuilder_assets / "helm"
    home = tmp_path_factory.mktemp("helm-home")
    env = {f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}
    env["HOME"] = str(home)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, env=env, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {done.stderr}")
        return done

    return run


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """``render(*extra_args, namespace=..., release=...)``: the chart's objects from
    ``helm template``."""

    def run(*args: str, namespace: str = "rkt-system", release: str = "t") -> list[dict[str, Any]]:
        done = helm("template", release, str(CHART), "--namespace", namespace, *args)
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return run
