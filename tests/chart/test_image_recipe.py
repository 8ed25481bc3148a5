"""Static checks of the agent's container image recipe (helm/image/Dockerfile).

There is no container engine on the development machines or in CI, so the image is never
built here. What is checked: the entry point equals the chart's command and args, every
file the recipe copies exists and is not excluded from the build context, those files hold
what the package build needs (project metadata, readme, the source root, the console
scripts' modules), and the base image's Python satisfies ``requires-python``.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from chartlib import REPO, Render, find
from packaging.specifiers import SpecifierSet

DOCKERFILE = REPO / "helm" / "image" / "Dockerfile"
DOCKERIGNORE = REPO / "helm" / "image" / "Dockerfile.dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions (continuations joined, comments dropped), with their stage."""
    joined = re.sub(r"\\\n", " ", text)
    stage = -1
    out: list[Instruction] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, arguments.strip()))
    return out


INSTRUCTIONS = parse(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def exec_form(keyword: str) -> list[str]:
    found = [i for i in INSTRUCTIONS if i.keyword == keyword and i.stage == FINAL_STAGE]
    assert len(found) == 1, f"the final stage needs exactly one {keyword}"
    value = json.loads(found[0].arguments)
    assert isinstance(value, list), f"{keyword} must use the exec (JSON) form"
    return [str(v) for v in value]


def copied_sources() -> list[str]:
    """Sources of COPY instructions that read the build context (not another stage)."""
    sources: list[str] = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword != "COPY" or "--from=" in instruction.arguments:
            continue
        words = [w for w in instruction.arguments.split() if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def excluded(path: str) -> bool:
    """Whether the .dockerignore (last matching pattern wins) leaves ``path`` out."""
    verdict = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            verdict = not negate
    return verdict


def test_entrypoint_and_cmd_equal_the_chart_command_and_args(render: Render) -> None:
    daemonset = find(render(), "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert exec_form("ENTRYPOINT") == container["command"]
    assert exec_form("CMD") == container["args"]


def test_entrypoint_is_a_console_script_of_the_package() -> None:
    assert exec_form("ENTRYPOINT")[0] in PYPROJECT["project"]["scripts"]


def test_copied_files_exist_and_reach_the_build_context() -> None:
    sources = copied_sources()
    assert sources, "the recipe copies nothing from the context"
    for source in sources:
        path = REPO / source.rstrip("/")
        assert path.exists(), f"COPY {source}: no such path in the repository"
        assert not excluded(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


def test_copied_files_hold_what_the_package_build_needs() -> None:
    copied = {s.rstrip("/") for s in copied_sources()}
    assert "pyproject.toml" in copied
    assert PYPROJECT["project"]["readme"] in copied
    for root in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert root in copied
    for name, target in PYPROJECT["project"]["scripts"].items():
        module, _, function = target.partition(":")
        relative = Path("operator", *module.split(".")).with_suffix(".py")
        assert relative.parts[0] in copied
        source = REPO / relative
        assert source.is_file(), f"console script {name}: {relative} does not exist"
        tree = ast.parse(source.read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in defined, f"console script {name}: {relative} has no {function}()"


# The Python of the Debian releases the image may be based on (it uses Debian's python3).
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}


def test_base_image_python_satisfies_requires_python() -> None:
    (arg,) = [i for i in INSTRUCTIONS if i.keyword == "ARG" and i.stage == -1]
    name, _, release = arg.arguments.partition("=")
    assert name == "DEBIAN"
    assert DEBIAN_PYTHON[release] in SpecifierSet(PYPROJECT["project"]["requires-python"])
    bases = [i.arguments for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert all(b.startswith("debian:${DEBIAN}-") for b in bases)


def test_dockerfile_and_the_dockerless_build_share_one_install_step() -> None:
    """What CI builds (.ci/agent-image.sh) is what users build: the same package list and the
    same install script, run with the same arguments, on the same Debian release."""
    final = [i for i in INSTRUCTIONS if i.stage == FINAL_STAGE and i.keyword == "RUN"]
    runs = " ".join(i.arguments for i in final)
    assert "install.sh packages" in runs
    assert "install.sh agent /tmp/wheels" in runs
    script = (REPO / ".ci" / "agent-image.sh").read_text()
    assert "/tmp/image/install.sh agent /tmp/wheels" in script
    assert '"$img/packages.txt"' in script
    (arg,) = [i for i in INSTRUCTIONS if i.keyword == "ARG" and i.stage == -1]
    assert f"SUITE={arg.arguments.partition('=')[2]}" in script
    install = (REPO / "helm" / "image" / "install.sh").read_text()
    assert '"$here/packages.txt"' in install
