"""The chart against the real API server: its output passes server-side validation, it
installs with helm, and the ServiceAccount it creates is denied what the agent must not do.

There are no controllers in the test control plane, so the installed DaemonSet never gets a
pod (and ``helm install`` runs without ``--wait``); ``test_agent_with_chart_rbac.py`` starts
the agent by hand exactly as the DaemonSet describes it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from chartlib import CHART, Helm, Render, find

from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.kube import unique_name


def test_template_passes_server_side_validation(
    helm: Helm, control_plane: ControlPlane, namespace: str
) -> None:
    rendered = helm("template", "t", str(CHART), "--namespace", namespace).stdout
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "--namespace", namespace, "-f", "-", input=rendered
    )
    applied = {line.split("/")[0] for line in done.stdout.splitlines()}
    assert applied == {
        "serviceaccount",
        "clusterrole.rbac.authorization.k8s.io",
        "clusterrolebinding.rbac.authorization.k8s.io",
        "role.rbac.authorization.k8s.io",  # the plugin's pods/exec on the agent (unbound)
        "validatingadmissionpolicy.admissionregistration.k8s.io",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io",
        "daemonset.apps",
    }
    assert all(line.endswith("(server dry run)") for line in done.stdout.splitlines())


@pytest.fixture
def release(helm: Helm, control_plane: ControlPlane, namespace: str) -> tuple[str, str, str]:
    """A helm release of the chart in a fresh namespace: (release, namespace, helm output)."""
    name = unique_name("rel", max_length=20)
    done = helm(
        "install", name, str(CHART), "--namespace", namespace,
        "--kubeconfig", str(control_plane.kubeconfig), "--no-hooks",
    )  # fmt: skip
    return name, namespace, done.stdout


def test_helm_install_creates_every_object(
    release: tuple[str, str, str], helm: Helm, control_plane: ControlPlane, render: Render
) -> None:
    name, namespace, output = release
    assert "STATUS: deployed" in output
    fullname = f"{name}-rkt-operator"
    for kind in ("serviceaccount", "daemonset"):
        control_plane.kubectl("get", kind, fullname, "--namespace", namespace)
    for kind in ("clusterrole", "clusterrolebinding"):
        control_plane.kubectl("get", kind, fullname)
    for kind in ("validatingadmissionpolicy", "validatingadmissionpolicybinding"):
        control_plane.kubectl("get", kind, f"{fullname}-node-confinement")
    listed = helm(
        "list", "--namespace", namespace, "--kubeconfig", str(control_plane.kubeconfig), "-q"
    )
    assert listed.stdout.split() == [name]
    # What the API server stored is what the chart renders for this release.
    stored = json.loads(
        control_plane.kubectl(
            "get", "daemonset", fullname, "--namespace", namespace, "-o", "json"
        ).stdout
    )
    rendered = find(render(namespace=namespace, release=name), "DaemonSet")
    (stored_container,) = stored["spec"]["template"]["spec"]["containers"]
    (rendered_container,) = rendered["spec"]["template"]["spec"]["containers"]
    for key in ("image", "command", "args"):
        assert stored_container[key] == rendered_container[key]
    assert _literal_env(stored_container) == _literal_env(rendered_container)


def _literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_notes_tell_the_next_step(
    release: tuple[str, str, str], control_plane: ControlPlane
) -> None:
    _, namespace, output = release
    assert "NOTES:" in output
    assert f"kubectl label namespace {namespace} pod-security.kubernetes.io/enforce" in output
    assert "kubectl wait --for=condition=Ready rkt/hello" in output
    # The first task the notes suggest is a valid RktTask for this API server.
    example = output.split("<<'YAML'\n")[1].split("     YAML\n")[0]
    example = textwrap.dedent(example).replace("<a node name>", "node-a")
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "--namespace", namespace, "-f", "-", input=example
    )
    assert "rkttask.rktoperator.io/hello created (server dry run)" in done.stdout


def _token_kubeconfig(
    control_plane: ControlPlane, release: tuple[str, str, str], tmp_path: Path
) -> Path:
    name, namespace, _ = release
    token = control_plane.create_token(namespace, f"{name}-rkt-operator")
    return control_plane.kubeconfig_for_token(token, tmp_path / "agent.kubeconfig")


@pytest.mark.parametrize(
    "verb_and_resource",
    [
        # By name: with --all kubectl would list first and find nothing to delete.
        ["delete", "rkttasks.rktoperator.io", "any-task", "--namespace={ns}"],
        ["get", "secrets", "--all-namespaces"],
        ["get", "configmaps", "--all-namespaces"],
        ["delete", "nodes", "--all"],
        ["create", "namespace", "agent-must-not"],
        ["get", "pods", "--all-namespaces"],
        ["get", "customresourcedefinitions"],
        ["get", "nodes"],
    ],
    ids=[
        "delete-tasks",
        "list-secrets",
        "list-configmaps",
        "delete-nodes",
        "create-ns",
        "pods",
        "list-crds",
        "list-nodes",
    ],
)
def test_service_account_is_denied_what_the_agent_must_not_do(
    control_plane: ControlPlane,
    release: tuple[str, str, str],
    tmp_path: Path,
    verb_and_resource: list[str],
) -> None:
    kubeconfig = _token_kubeconfig(control_plane, release, tmp_path)
    args = [arg.format(ns=release[1]) for arg in verb_and_resource]
    done = control_plane.kubectl(*args, kubeconfig=kubeconfig, check=False)
    assert done.returncode != 0
    assert "Forbidden" in done.stderr


def test_service_account_may_do_what_the_agent_needs(
    control_plane: ControlPlane, release: tuple[str, str, str], tmp_path: Path
) -> None:
    """The same token is accepted for the agent's reads: the denials above are RBAC, not a
    broken token."""
    kubeconfig = _token_kubeconfig(control_plane, release, tmp_path)
    _, namespace, _ = release
    control_plane.kubectl(
        "get", "rkttasks.rktoperator.io", "--all-namespaces", kubeconfig=kubeconfig
    )
    for verb, resource, scope in [
        ("patch", "rkttasks.rktoperator.io", ["--subresource=status", f"--namespace={namespace}"]),
        ("create", "events", [f"--namespace={namespace}"]),
        ("get", "secrets", [f"--namespace={namespace}"]),
        ("patch", "nodes", []),
    ]:
        done = control_plane.kubectl("auth", "can-i", verb, resource, *scope, kubeconfig=kubeconfig)
        assert done.stdout.strip() == "yes", (verb, resource)
