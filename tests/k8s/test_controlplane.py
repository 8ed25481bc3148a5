"""Acceptance tests of the local control plane (issue 2), with real kubectl and kube-apiserver.

They use a small test-local CRD (``probes.harness.rktoperator.io``), not the product CRD, to
check the API features the operator depends on: selectable fields served as field selectors,
CEL validation rules, RBAC for a ServiceAccount token; plus the pinned versions, the harness's
clean-up and its errors.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from fixtures_k8s import REPO, Kubectl, configmap_reader
from rkt_devkit import processes
from rkt_devkit.controlplane import ControlPlane, ControlPlaneError
from rkt_devkit.kube import get_json

pytestmark = pytest.mark.k8s

GROUP = "harness.rktoperator.io"
CRD_NAME = f"probes.{GROUP}"
CEL_MESSAGE = "minPort must not be greater than maxPort"

PROBE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "Probe",
            "plural": "probes",
            "singular": "probe",
            "listKind": "ProbeList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "selectableFields": [{"jsonPath": ".spec.nodeName"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["nodeName"],
                                "properties": {
                                    "nodeName": {"type": "string"},
                                    "minPort": {"type": "integer"},
                                    "maxPort": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.minPort) || !has(self.maxPort)"
                                        " || self.minPort <= self.maxPort",
                                        "message": CEL_MESSAGE,
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def probe(name: str, node: str, **ports: int) -> str:
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Probe", "metadata": {"name": name}}
    body["spec"] = {"nodeName": node, **ports}
    return json.dumps(body)


def pins() -> dict[str, str]:
    """The versions pinned in .ci/testbin.env."""
    values: dict[str, str] = {}
    for line in (REPO / ".ci" / "testbin.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for a non-reaping parent is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def probe_crd(control_plane: ControlPlane) -> str:
    control_plane.apply(json.dumps(PROBE_CRD))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    return CRD_NAME


def test_selectable_field_is_served_as_field_selector(
    kubectl: Kubectl, namespace: str, probe_crd: str
) -> None:
    for name, node in (("a", "node-1"), ("b", "node-2"), ("c", "node-1")):
        kubectl("apply", "-n", namespace, "-f", "-", input=probe(name, node))

    def names(selector: str) -> list[str]:
        done = kubectl(
            "get", "probes", "-n", namespace, "--field-selector", selector,
            "-o", "jsonpath={.items[*].metadata.name}",
        )  # fmt: skip
        return sorted(done.stdout.split())

    assert names("spec.nodeName=node-1") == ["a", "c"]
    assert names("spec.nodeName=node-2") == ["b"]
    assert names("spec.nodeName=node-3") == []
    assert names("spec.nodeName!=node-1") == ["b"]
    # The server does the selecting: a field that is not declared selectable is refused.
    refused = kubectl(
        "get", "probes", "-n", namespace, "--field-selector", "spec.minPort=1", check=False
    )
    assert refused.returncode != 0
    assert "field label not supported" in refused.stderr


def test_cel_rule_rejects_bad_object_at_apply(
    kubectl: Kubectl, namespace: str, probe_crd: str
) -> None:
    bad = kubectl(
        "apply", "-n", namespace, "-f", "-", input=probe("bad", "n1", minPort=9000, maxPort=8000),
        check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert CEL_MESSAGE in bad.stderr
    assert get_json(kubectl, "probe", "bad", namespace) is None

    kubectl("apply", "-n", namespace, "-f", "-", input=probe("good", "n1", minPort=80, maxPort=90))
    good = get_json(kubectl, "probe", "good", namespace)
    assert good is not None
    assert good["spec"] == {"nodeName": "n1", "minPort": 80, "maxPort": 90}


def test_service_account_gets_exactly_what_its_role_grants(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    user = configmap_reader(kubectl, namespace, verbs="get,list")
    token = control_plane.create_token(namespace, "reader", duration=600)
    reader = control_plane.kubeconfig_for_token(token, tmp_path / "reader.kubeconfig")

    def as_reader(*args: str) -> subprocess.CompletedProcess[str]:
        return control_plane.kubectl(*args, kubeconfig=reader, check=False)

    whoami = as_reader("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == user

    allowed = as_reader(
        "get", "configmap", "settings", "-n", namespace, "-o", "jsonpath={.data.colour}"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == "blue"

    for denied in (
        as_reader("get", "secret", "creds", "-n", namespace),
        as_reader("create", "configmap", "other", "-n", namespace),
        as_reader("get", "configmaps", "-n", "default"),
    ):
        assert denied.returncode != 0
        assert f'is forbidden: User "{user}" cannot' in denied.stderr


def test_binaries_report_the_pinned_versions(control_plane: ControlPlane, kubectl: Kubectl) -> None:
    pinned = pins()
    k8s = f"v{pinned['K8S_VERSION']}"

    helm = subprocess.run(
        [str(control_plane.helm), "version", "--template", "{{.Version}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert helm.stdout.strip() == f"v{pinned['HELM_VERSION']}"

    client_version = json.loads(kubectl("version", "--client", "-o", "json").stdout)
    assert client_version["clientVersion"]["gitVersion"] == k8s

    assert json.loads(control_plane.get("/version"))["gitVersion"] == k8s
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == k8s

    etcd = subprocess.run(
        [str(control_plane.binary("etcd")), "--version"], capture_output=True, text=True, check=True
    )
    assert etcd.stdout.splitlines()[0] == f"etcd Version: {pinned['ETCD_VERSION']}"


def test_api_client_and_metrics_reach_the_server(control_plane: ControlPlane) -> None:
    with control_plane.api_client() as api:
        default = client.CoreV1Api(api).read_namespace("default")
        assert default.metadata is not None
        assert default.metadata.name == "default"
    assert "apiserver_request_total" in control_plane.metrics()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A base directory for the run directories of extra control planes."""
    path = tmp_path / "runs"
    path.mkdir()
    return path


def test_stop_leaves_no_process_and_no_directory(kubebuilder_assets: Path, runs: Path) -> None:
    plane = ControlPlane(kubebuilder_assets, base_dir=runs)
    with plane:
        assert sorted(plane.pids) == ["etcd", "kube-apiserver"]
        assert all(alive(pid) for pid in plane.pids.values())
        assert plane.run_dir is not None
        assert plane.run_dir.parent == runs
        done = plane.kubectl("get", "namespace", "default", "-o", "name")
        assert done.stdout.strip() == "namespace/default"
    assert len(plane.started_pids) >= 2
    assert not [pid for pid in plane.started_pids if alive(pid)]
    assert list(runs.iterdir()) == []
    plane.stop()  # a second stop is harmless


def test_missing_binary_is_named(kubebuilder_assets: Path, tmp_path: Path, runs: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("etcd", "kubectl"):
        (assets / name).symlink_to(kubebuilder_assets / name)
    with pytest.raises(ControlPlaneError, match="kube-apiserver") as raised:
        ControlPlane(assets, base_dir=runs).start()
    assert str(assets / "kube-apiserver") in str(raised.value)
    assert list(runs.iterdir()) == []


def test_binary_dying_at_start_is_named_with_its_log(
    kubebuilder_assets: Path, tmp_path: Path, runs: Path
) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("etcd", "kubectl"):
        (assets / name).symlink_to(kubebuilder_assets / name)
    broken = assets / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0101 cannot load serving certificate: boom' >&2\nexit 3\n")
    broken.chmod(0o755)
    plane = ControlPlane(assets, base_dir=runs)
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited with code 3") as raised:
        plane.start()
    assert "cannot load serving certificate: boom" in str(raised.value)
    assert len(plane.started_pids) == 2  # etcd had started; it was stopped again
    assert not [pid for pid in plane.started_pids if alive(pid)]
    assert list(runs.iterdir()) == []


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "cluster"
    yield directory
    cli("down", "--dir", str(directory))  # also when the test failed half-way


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "rkt_devkit.cluster", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def test_cli_up_leaves_a_cluster_running_until_down(
    kubebuilder_assets: Path, cluster_dir: Path
) -> None:
    up = cli("up", "--assets", str(kubebuilder_assets), "--dir", str(cluster_dir))
    assert up.returncode == 0, up.stderr
    kubeconfig = cluster_dir / "kubeconfig"
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout
    serve_pid = int((cluster_dir / "pid").read_text())
    # `up` has exited: the control plane lives on in the detached serve process.
    kubectl = [str(kubebuilder_assets / "kubectl"), f"--kubeconfig={kubeconfig}"]
    kubectl.append(f"--cache-dir={cluster_dir.parent / 'kubectl-cache'}")
    ns = subprocess.run(
        [*kubectl, "get", "ns", "default", "-o", "name"], capture_output=True, text=True
    )
    assert ns.stdout.strip() == "namespace/default", ns.stderr
    again = cli("up", "--assets", str(kubebuilder_assets), "--dir", str(cluster_dir))
    assert again.returncode == 0
    assert "already running" in again.stdout

    down = cli("down", "--dir", str(cluster_dir))
    assert down.returncode == 0, down.stderr
    assert not alive(serve_pid)
    assert sorted(p.name for p in cluster_dir.iterdir()) == ["serve.log"]
    gone = subprocess.run(
        [*kubectl, "get", "ns", "--request-timeout=5s"], capture_output=True, text=True
    )
    assert gone.returncode != 0


def test_port_race_is_retried_with_new_ports(
    kubebuilder_assets: Path, runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt gets an etcd client port that another socket holds; the start retries."""
    real_free_ports = processes.free_ports
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        handed_out: list[list[int]] = []

        def free_ports(count: int) -> list[int]:
            ports = real_free_ports(count)
            if not handed_out:
                ports[0] = taken
            handed_out.append(ports)
            return ports

        monkeypatch.setattr(processes, "free_ports", free_ports)
        with ControlPlane(kubebuilder_assets, base_dir=runs) as plane:
            assert len(handed_out) == 2
            etcd_log = plane.log_path("etcd").read_text()
            assert "=== attempt 1" in etcd_log
            assert "address already in use" in etcd_log
            assert "=== attempt 2" in etcd_log
            assert plane.server == f"https://127.0.0.1:{handed_out[1][2]}"
            assert (
                plane.kubectl("get", "ns", "default", "-o", "name").stdout.strip()
                == "namespace/default"
            )
    assert not [pid for pid in plane.started_pids if alive(pid)]
    assert list(runs.iterdir()) == []
