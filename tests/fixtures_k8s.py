"""Fixtures for tests against the real local control plane (registered suite-wide as a plugin).

``control_plane`` starts one etcd + kube-apiserver per test session from ``KUBEBUILDER_ASSETS``
(``make test`` sets it) and installs every CRD in the repository's ``crds/``; ``kubectl`` is
its bound helper, ``kubeconfig`` the admin kubeconfig path, ``namespace`` a fresh namespace per
test (there is no namespace controller, so deleted namespaces stay Terminating: never reuse
one). When a test that used the control plane fails, the tail of kube-apiserver's log is added
to its report.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import FrameType

import pytest

from rkt_devkit.controlplane import ControlPlane, ControlPlaneError, log_tail
from rkt_devkit.kube import unique_name

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"

_PLANE = pytest.StashKey[ControlPlane]()

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def kubebuilder_assets() -> Path:
    """The folder with etcd, kube-apiserver, kubectl and helm (from ``make testenv``)."""
    value = os.environ.get("KUBEBUILDER_ASSETS", "")
    if not value:
        pytest.fail(
            "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, or "
            "`export $(make -s testenv | tail -1)` first (it builds or finds etcd, "
            "kube-apiserver, kubectl and helm)",
            pytrace=False,
        )
    return Path(value)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, kubebuilder_assets: Path
) -> Iterator[ControlPlane]:
    """One control plane for the whole session, with the repository's CRDs installed.

    A SIGTERM to pytest (a CI timeout) becomes a KeyboardInterrupt so that this fixture's
    teardown still stops etcd and kube-apiserver; ``atexit`` covers other exits.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    plane = ControlPlane(kubebuilder_assets)
    try:
        failure = None
        try:
            plane.start()
            plane.apply_crds(CRDS)
        except ControlPlaneError as exc:  # its message says it all; tracebacks would bury it
            failure = str(exc)
        if failure is not None:
            pytest.fail(f"the test control plane did not start: {failure}", pytrace=False)
        request.config.stash[_PLANE] = plane
        yield plane
    finally:
        if _PLANE in request.config.stash:
            del request.config.stash[_PLANE]
        plane.stop()
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """``kubectl(*args, input=None, check=True)`` as the admin user of the session cluster."""
    return control_plane.kubectl


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """The admin kubeconfig of the session cluster."""
    return control_plane.kubeconfig


@pytest.fixture
def namespace(request: pytest.FixtureRequest, control_plane: ControlPlane) -> Iterator[str]:
    """A namespace created for this test only (deleted afterwards, without waiting)."""
    name = unique_name(f"t-{request.node.name}", max_length=50)
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of kube-apiserver's log to failed tests that used the control plane."""
    report = yield
    plane = item.config.stash.get(_PLANE, None)
    if report.failed and plane is not None and "control_plane" in getattr(item, "fixturenames", ()):
        tail = log_tail(plane.log_path("kube-apiserver"), lines=30)
        report.sections.append(("kube-apiserver log (last lines)", tail))
    return report


def configmap_reader(kubectl: Kubectl, namespace: str, *, verbs: str = "get") -> str:
    """ServiceAccount ``reader`` in ``namespace``, allowed ``verbs`` on ConfigMaps only, with
    ConfigMap ``settings`` (``colour=blue``) and Secret ``creds`` (``password=x``) to read.
    Returns the user name the API server knows it by."""
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl(
        "create", "role", "cm-reader", f"--verb={verbs}", "--resource=configmaps", "-n", namespace
    )  # fmt: skip
    kubectl(
        "create", "rolebinding", "reader-cm-reader", "--role=cm-reader",
        f"--serviceaccount={namespace}:reader", "-n", namespace,
    )  # fmt: skip
    kubectl("create", "configmap", "settings", "--from-literal=colour=blue", "-n", namespace)
    kubectl("create", "secret", "generic", "creds", "--from-literal=password=x", "-n", namespace)
    return f"system:serviceaccount:{namespace}:reader"
