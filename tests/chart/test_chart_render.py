"""The chart with the real helm: it lints clean, bad values fail at template time, and the
rendered DaemonSet and RBAC have the shape a node agent needs (and no more privilege)."""

from __future__ import annotations

from typing import Any

import pytest
from chartlib import CHART, REPO, Helm, Render, find


def test_helm_lint(helm: Helm) -> None:
    done = helm("lint", str(CHART))
    assert "0 chart(s) failed" in done.stdout


def test_helm_lint_strict(helm: Helm) -> None:
    done = helm("lint", "--strict", str(CHART), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout
    assert "[ERROR]" not in done.stdout


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "agent.launcher=docker"], "/agent/launcher"),
        (["--set", "agent.rktPat=/usr/bin/rkt"], "rktPat"),
        (["--set", "agnet.logLevel=INFO"], "agnet"),
        (["--set", "agent.nodeName=node-a"], "/agent/nodeName"),
        (["--set-json", "agent.maxKillTimeoutSeconds=-1"], "/agent/maxKillTimeoutSeconds"),
        (["--set-json", "agent.resyncIntervalSeconds=0"], "/agent/resyncIntervalSeconds"),
        (["--set", "agent.rktDir=var/lib/rkt"], "/agent/rktDir"),
        (["--set", "agent.livenessEndpoint=http://0.0.0.0/healthz"], "/agent/livenessEndpoint"),
        (["--set-json", 'agent.namespaces="a,b"'], "/agent/namespaces"),
        (["--set", "agent.logLevel=TRACE"], "/agent/logLevel"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set-json", 'hostPaths.extra=[{"name":"x","path":"rel"}]'], "/hostPaths/extra/0"),
        (["--set", "rbac.create=yes"], "/rbac/create"),
    ],
)
def test_schema_rejects_bad_values(helm: Helm, args: list[str], complaint: str) -> None:
    done = helm("template", "t", str(CHART), *args, check=False)
    assert done.returncode != 0
    assert "don't meet the specifications of the schema" in done.stderr
    assert complaint in done.stderr


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "DaemonSet")["spec"]["template"]["spec"]
    return spec


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(objects)["containers"]
    return dict(container)


def test_daemonset_runs_the_agent_privileged_in_the_host_namespaces(render: Render) -> None:
    objects = render()
    daemonset = find(objects, "DaemonSet")
    pod = _pod(objects)
    container = _container(objects)
    assert container["command"] == ["rkt-operator"]
    assert container["args"] == ["run"]
    assert container["securityContext"]["privileged"] is True
    assert pod["hostPID"] is True
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert daemonset["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0
    assert daemonset["metadata"]["namespace"] == "rkt-system"


def test_node_and_pod_identity_come_from_the_downward_api(render: Render) -> None:
    env = {e["name"]: e for e in _container(render())["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_termination_grace_covers_the_largest_kill_timeout(render: Render) -> None:
    for timeout in (0, 30, 92.5, 600):
        pod = _pod(render(f"--set-json=agent.maxKillTimeoutSeconds={timeout}"))
        assert pod["terminationGracePeriodSeconds"] > timeout


def test_liveness_probe_follows_the_endpoint_setting(render: Render) -> None:
    probe = _container(render())["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": 8080}
    custom = "--set=agent.livenessEndpoint=http://0.0.0.0:9311/alive"
    assert _container(render(custom))["livenessProbe"]["httpGet"] == {
        "path": "/alive",
        "port": 9311,
    }
    assert "livenessProbe" not in _container(render("--set=agent.livenessEndpoint="))


def test_host_paths_are_mounted_at_the_same_paths(render: Render) -> None:
    args = [
        "--set=agent.rktDir=/data/rkt",
        "--set=agent.taskRoot=/data/tasks",
        "--set-json=hostPaths.extra=[{'name':'srv','path':'/srv','readOnly':true}]".replace(
            "'", '"'
        ),
    ]
    objects = render(*args)
    volumes = {v["name"]: v["hostPath"]["path"] for v in _pod(objects)["volumes"]}
    mounts = {m["name"]: m for m in _container(objects)["volumeMounts"]}
    assert set(volumes) == set(mounts)
    for name, path in volumes.items():
        assert mounts[name]["mountPath"] == path
    assert volumes["rkt-dir"] == "/data/rkt"
    assert volumes["task-root"] == "/data/tasks"
    assert volumes["rkt-local-config"] == "/etc/rkt"
    assert volumes["rkt-binary"] == "/usr/bin/rkt"
    assert volumes["run-systemd"] == "/run/systemd"
    assert mounts["srv"]["readOnly"] is True
    assert mounts["rkt-dir"]["mountPropagation"] == "Bidirectional"
    # Pods run in the host's namespaces: the agent's rkt must see their network state there.
    assert volumes["netns"] == "/run/netns"
    assert mounts["netns"]["mountPropagation"] == "Bidirectional"
    assert volumes["cni-data"] == "/var/lib/cni"
    assert not mounts["cni-data"].get("readOnly")


def test_optional_host_paths_can_be_left_out(render: Render) -> None:
    objects = render(
        "--set=hostPaths.rktBinary=",
        "--set=hostPaths.rktStage1Dir=",
        "--set=hostPaths.systemd=false",
        "--set=hostPaths.netnsDir=",
        "--set=hostPaths.cniDataDir=",
    )
    names = {v["name"] for v in _pod(objects)["volumes"]}
    assert names == {"rkt-dir", "rkt-local-config", "task-root"}


def _agents(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects of the agent (not the roles the chart ships for kubectl rkt's users)."""
    return [
        o
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "kubectl-plugin"
    ]


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = find(_agents(objects), "ClusterRole")["rules"]
    return rules


def test_cluster_role_is_least_privilege(render: Render) -> None:
    rules = _rules(render())
    granted = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("rktoperator.io", "rkttasks", "list"),
        ("rktoperator.io", "rkttasks", "watch"),
        ("rktoperator.io", "rkttasks", "patch"),
        ("rktoperator.io", "rkttasks/status", "patch"),
        ("", "events", "create"),
        ("", "secrets", "get"),
        ("", "configmaps", "get"),
        ("", "nodes", "patch"),
    }


def test_scanning_rules_are_granted_only_for_namespace_globs(render: Render) -> None:
    """The agent turns kopf's scanning on only for globs (rkt_operator.kopfapp); so does the
    chart's RBAC for the Namespace and CRD watches that scanning needs."""

    def watched(*args: str) -> set[str]:
        return {
            resource
            for rule in _rules(render(*args))
            if "watch" in rule["verbs"]
            for resource in rule["resources"]
        }

    scanning = {"namespaces", "customresourcedefinitions"}
    assert watched() & scanning == set()
    assert watched('--set-json=agent.namespaces=["team-a","team-b"]') & scanning == set()
    for pattern in ("team-*", "!kube-system", "ns-?"):
        assert scanning <= watched(f'--set-json=agent.namespaces=["a","{pattern}"]')


def test_binding_ties_the_role_to_the_service_account(render: Render) -> None:
    objects = render()
    account = find(objects, "ServiceAccount")
    binding = find(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == find(_agents(objects), "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "rkt-system"}
    ]
    assert _pod(objects)["serviceAccountName"] == account["metadata"]["name"]


def test_rbac_and_service_account_can_be_brought_by_the_user(render: Render) -> None:
    objects = render("--set=rbac.create=false", "--set=serviceAccount.create=false")
    kinds = {o["kind"] for o in objects}
    assert kinds == {"DaemonSet", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    assert _pod(objects)["serviceAccountName"] == "default"


def test_namespace_is_rendered_only_on_request(render: Render) -> None:
    assert "Namespace" not in {o["kind"] for o in render()}
    namespace = find(render("--set=podSecurity.createNamespace=true"), "Namespace")
    assert namespace["metadata"]["name"] == "rkt-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_chart_crd_is_identical_to_the_repository_crd() -> None:
    name = "rkttasks.rktoperator.io.yaml"
    chart_crd = CHART / "crds" / name
    repo_crd = REPO / "crds" / name
    assert repo_crd.is_file(), "crds/ has no RktTask CRD"
    assert chart_crd.read_bytes() == repo_crd.read_bytes()
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [name]


def test_secret_reads_are_per_namespace_for_a_namespace_list(render: Render) -> None:
    """With a plain namespace list the agent reads Secrets and ConfigMaps only there."""
    objects = render('--set-json=agent.namespaces=["team-a","team-b"]')
    cluster_wide = {r for rule in _rules(objects) for r in rule["resources"]}
    assert cluster_wide.isdisjoint({"secrets", "configmaps"})
    roles = {o["metadata"]["namespace"]: o for o in _agents(objects) if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    account = find(objects, "ServiceAccount")["metadata"]["name"]
    for ns, role in roles.items():
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]}
        ]
        binding = bindings[ns]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "rkt-system"}
        ]
    # All namespaces, or a glob (the namespaces are not known in advance): cluster-wide.
    for args in ((), ('--set-json=agent.namespaces=["team-*"]',)):
        objects = render(*args)
        assert "Role" not in {o["kind"] for o in _agents(objects)}
        assert {"secrets", "configmaps"} <= {
            r for rule in _rules(objects) for r in rule["resources"]
        }


def test_node_confinement_policy_binds_the_agent_identity(render: Render) -> None:
    objects = render()
    policy = find(objects, "ValidatingAdmissionPolicy")
    binding = find(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    account = find(objects, "ServiceAccount")["metadata"]["name"]
    (condition,) = policy["spec"]["matchConditions"]
    assert f"system:serviceaccount:rkt-system:{account}" in condition["expression"]
    kinds = {o["kind"] for o in render("--set=nodeConfinement.enabled=false")}
    assert kinds.isdisjoint({"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"})
