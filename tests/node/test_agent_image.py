"""The agent image that .ci/agent-image.sh built without Docker (the one the node tier runs):
its configuration equals helm/image/Dockerfile's, and it holds the agent and nothing of the
simulator or the development kit."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from nodelib import NodeInputs

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "helm" / "image" / "Dockerfile"

pytestmark = pytest.mark.node


def _final_stage() -> dict[str, Any]:
    """ENV, USER, ENTRYPOINT and CMD of the Dockerfile's last stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages = re.split(r"(?m)^FROM ", text)
    found: dict[str, Any] = {"Env": []}
    for line in stages[-1].splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "ENV":
            found["Env"] += re.findall(r"(\S+=\S+)", rest)
        elif keyword == "USER":
            found["User"] = rest.strip()
        elif keyword in ("ENTRYPOINT", "CMD"):
            found[keyword.title()] = json.loads(rest)
    return found


def _archive(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The image configuration and the paths in its layers, from a docker-archive."""
    with tarfile.open(path) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        (manifest,) = json.load(member)
        config_file = archive.extractfile(manifest["Config"])
        assert config_file is not None
        config = json.load(config_file)
        names: list[str] = []
        for layer in manifest["Layers"]:
            blob = archive.extractfile(layer)
            assert blob is not None
            with tarfile.open(fileobj=blob, mode="r|*") as inner:
                names += [m.name for m in inner]
    return config, names


@pytest.fixture(scope="module")
def image(node_inputs: NodeInputs) -> tuple[dict[str, Any], list[str]]:
    return _archive(node_inputs.agent_archive)


def test_configuration_equals_the_dockerfile(image: tuple[dict[str, Any], list[str]]) -> None:
    config = image[0]["config"]
    expected = _final_stage()
    assert config["Entrypoint"] == expected["Entrypoint"] == ["rkt-operator"]
    assert config["Cmd"] == expected["Cmd"] == ["run"]
    assert config["User"] == expected["User"]
    assert sorted(config["Env"]) == sorted(expected["Env"])


def test_image_holds_the_agent_and_neither_simulator_nor_devkit(
    image: tuple[dict[str, Any], list[str]],
) -> None:
    names = image[1]
    site = [n for n in names if "/site-packages/" in n]
    assert any(n.endswith("site-packages/rkt_operator/cli.py") for n in site)
    assert any(n.endswith("opt/rkt-operator/bin/rkt-operator") for n in names)
    top_level = {n.split("/site-packages/", 1)[1].split("/", 1)[0] for n in site}
    assert "rkt_operator" in top_level
    assert not top_level & {"rkt_sim", "rkt_devkit", "tests", "bench"}
    # Nor rkt itself: the chart mounts the host's.
    assert not [n for n in names if n.endswith(("bin/rkt", ".aci"))]
