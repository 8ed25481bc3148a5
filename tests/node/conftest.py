"""The real-node tier: a real kubelet + containerd runs the chart's DaemonSet with the agent's
image, and the agent runs tasks on real rkt.

Inputs come from the project scripts, which ``make test`` runs as root (``.ci/node.sh``):
``NODEBIN_ASSETS`` (kubelet, kube-controller-manager, kube-scheduler), ``PAUSE_IMAGE`` and
``PAUSE_IMAGE_ARCHIVE`` (the sandbox image), ``AGENT_IMAGE`` and ``AGENT_IMAGE_ARCHIVE`` (the
agent image built without Docker) and ``RKT_DIR`` (real rkt and its stage1 images). In CI
(``CI=true``) a missing input or a node that does not start fails the tier; elsewhere the tier
is skipped with one line saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodelib import NodeInputs

import realrkt
from rkt_devkit.controlplane import ControlPlane, ControlPlaneError
from rkt_devkit.node import Node, control_plane_args

INPUTS = (
    "NODEBIN_ASSETS",
    "PAUSE_IMAGE",
    "PAUSE_IMAGE_ARCHIVE",
    "AGENT_IMAGE",
    "AGENT_IMAGE_ARCHIVE",
    "RKT_DIR",
)
IN_CI = realrkt.in_ci()


def _missing() -> str | None:
    """Why the tier cannot run here ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root (a real kubelet and containerd)"
    absent = [name for name in INPUTS if not os.environ.get(name)]
    if absent:
        return f"{', '.join(absent)} not set (run `make test` as root: .ci/node.sh builds them)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None or IN_CI:  # in CI the fixtures fail loudly instead
        return
    skip = pytest.mark.skip(reason=f"real-node tier: {reason}")
    for item in items:
        if "node" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def node_inputs() -> NodeInputs:
    reason = _missing()
    if reason is not None:
        pytest.fail(f"real-node tier cannot run in CI: {reason}", pytrace=False)
    env = os.environ
    inputs = NodeInputs(
        nodebin=Path(env["NODEBIN_ASSETS"]),
        pause_image=env["PAUSE_IMAGE"],
        pause_archive=Path(env["PAUSE_IMAGE_ARCHIVE"]),
        agent_image=env["AGENT_IMAGE"],
        agent_archive=Path(env["AGENT_IMAGE_ARCHIVE"]),
        rkt_dir=Path(env["RKT_DIR"]),
    )
    for path in (inputs.pause_archive, inputs.agent_archive, inputs.rkt_dir / "rkt"):
        if not path.exists():
            pytest.fail(f"real-node tier: {path} does not exist", pytrace=False)
    return inputs


@pytest.fixture(scope="module")
def node_plane(kubebuilder_assets: Path) -> Iterator[ControlPlane]:
    """A control plane of its own (ServiceAccount admission on, kubelet address type)."""
    plane = ControlPlane(kubebuilder_assets, service_accounts=True, extra_args=control_plane_args())
    try:
        plane.start()
        plane.apply_crds(Path(__file__).resolve().parents[2] / "crds")
    except ControlPlaneError as exc:
        plane.stop()
        pytest.fail(f"the node tier's control plane did not start: {exc}", pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def node(node_plane: ControlPlane, node_inputs: NodeInputs) -> Iterator[Node]:
    """A real node joined to ``node_plane``, with the agent image loaded."""
    real = Node(
        node_plane,
        node_inputs.nodebin,
        pause_image=node_inputs.pause_image,
        pause_archive=node_inputs.pause_archive,
    )
    try:
        real.start()
        real.import_image(node_inputs.agent_archive)
    except ControlPlaneError as exc:
        logs = real.logs() if real.run_dir is not None else ""
        real.stop()
        pytest.fail(f"the real node did not start: {exc}\n{logs}", pytrace=False)
    yield real
    real.stop()
