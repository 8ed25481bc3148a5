"""Guards on the repository's shape that tools would otherwise break silently."""

from __future__ import annotations

import ast
import collections
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "rkt_operator"


def test_operator_folder_is_a_source_root_not_a_package() -> None:
    # A package named "operator" would shadow the standard library's operator module.
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert (PACKAGE / "__init__.py").is_file()


def test_test_module_basenames_are_unique() -> None:
    # pytest's default import mode keys test modules by basename.
    names = collections.Counter(
        p.name for folder in ("tests", "bench") for p in (ROOT / folder).rglob("test_*.py")
    )
    assert [name for name, count in names.items() if count > 1] == []


def _calls_and_names(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    attributes = {
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    return calls, attributes


def test_no_print_and_environment_read_only_in_settings() -> None:
    offenders: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        calls, attributes = _calls_and_names(path)
        if "print" in calls:
            offenders.append(f"{rel}: print")
        if {"os.environ", "os.getenv"} & attributes and rel not in {
            "settings.py",
        }:
            offenders.append(f"{rel}: reads the environment")
    assert offenders == []


def test_console_scripts_point_at_real_functions() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    # rkt-sim is a development tool: `make install-dev` gives it a launcher in the venv.
    # kubectl-rkt: the kubectl plugin (kubectl finds executables named kubectl-* on PATH).
    assert set(scripts) == {"rkt-operator", "kubectl-rkt"}
    for target in scripts.values():
        module, func = target.split(":")
        source = PACKAGE.parent / (module.replace(".", "/") + ".py")
        tree = ast.parse(source.read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_the_agent_wheel_holds_only_the_agent(tmp_path: Path) -> None:
    """The simulator and the development kit live beside the agent, not in what ships."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("rkt_operator-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"rkt_operator"}
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "rkt_sim" in n or "rkt_devkit" in n]
    assert (ROOT / "operator" / "rkt_sim" / "main.py").is_file()
    assert (ROOT / "operator" / "rkt_devkit" / "controlplane.py").is_file()


def test_the_version_has_one_home_and_the_chart_follows_it() -> None:
    import yaml

    import rkt_operator

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((ROOT / "helm" / "rkt-operator" / "Chart.yaml").read_text())
    assert rkt_operator.__version__ == project["version"]  # read from the package metadata
    assert str(chart["appVersion"]) == rkt_operator.__version__
    init = (PACKAGE / "__init__.py").read_text()
    assert project["version"] not in init  # not written down a second time


def test_api_names_are_spelled_out_only_in_model_api() -> None:
    # The group, version and key prefix have one home (rkt_operator/model/api.py); every
    # other module builds on its constants, so renaming the API is a one-file change.
    home = PACKAGE / "model" / "api.py"
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == home:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            text = node.value
            if text.startswith("rktoperator.io") or text in ("v1alpha1", "rkttasks"):
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {text!r}")
    assert spelled == []
