"""The plain manifests in ``manifests/`` are exactly what the chart renders today, and
``kubectl apply -f manifests/`` installs them into a real API server."""

from __future__ import annotations

from pathlib import Path

import yaml
from chartlib import REPO

from rkt_devkit import render_manifests
from rkt_devkit.controlplane import ControlPlane

MANIFESTS = REPO / "manifests"


def test_committed_manifests_equal_a_fresh_render(kubebuilder_assets: Path, tmp_path: Path) -> None:
    fresh = render_manifests.render(
        kubebuilder_assets / "helm",
        chart=REPO / "helm" / "rkt-operator",
        crd=REPO / "crds" / render_manifests.CRD_FILE,
        out=tmp_path,
    )
    committed = sorted(p for p in MANIFESTS.iterdir() if p.suffix == ".yaml")
    assert [p.name for p in committed] == [p.name for p in fresh], "run `make manifests`"
    for ours, theirs in zip(committed, fresh, strict=True):
        assert ours.read_text() == theirs.read_text(), f"{ours.name}: run `make manifests`"


def test_manifests_hold_the_whole_installation() -> None:
    kinds = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, path.name
        kinds.append(docs[0]["kind"])
        if docs[0]["kind"] == "Namespace":
            labels = docs[0]["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
        text = path.read_text()
        assert "managed-by: Helm" not in text
        assert "helm.sh/chart" not in text
    assert kinds == [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "DaemonSet",
        "Role",
    ]


def test_kubectl_apply_installs_the_manifests(control_plane: ControlPlane) -> None:
    """The exact command the README gives, against the real API server (the CRD is already
    there from the session fixture: applying it again must be a no-op, not an error)."""
    done = control_plane.kubectl("apply", "-f", str(MANIFESTS))
    applied = {line.split(" ")[0] for line in done.stdout.splitlines()}
    assert applied == {
        "namespace/rkt-operator",
        "customresourcedefinition.apiextensions.k8s.io/rkttasks.rktoperator.io",
        "serviceaccount/rkt-operator",
        "clusterrole.rbac.authorization.k8s.io/rkt-operator",
        "clusterrole.rbac.authorization.k8s.io/rkt-operator-task-operator",
        "clusterrole.rbac.authorization.k8s.io/rkt-operator-task-viewer",
        "role.rbac.authorization.k8s.io/rkt-operator-agent-exec",
        "clusterrolebinding.rbac.authorization.k8s.io/rkt-operator",
        "validatingadmissionpolicy.admissionregistration.k8s.io/rkt-operator-node-confinement",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/rkt-operator-node-confinement",
        "daemonset.apps/rkt-operator",
    }
    control_plane.kubectl("get", "daemonset", "rkt-operator", "--namespace", "rkt-operator")
