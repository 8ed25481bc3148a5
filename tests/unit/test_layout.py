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
            # The simulator is a stand-alone rkt CLI: --inherit-env copies rkt's own
            # environment into the apps, as the real rkt does.
            "simulator/main.py",
        }:
            offenders.append(f"{rel}: reads the environment")
    assert offenders == []


def test_console_scripts_point_at_real_functions() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"rkt-operator", "rkt-sim"}
    for target in scripts.values():
        module, func = target.split(":")
        source = PACKAGE.parent / (module.replace(".", "/") + ".py")
        tree = ast.parse(source.read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
