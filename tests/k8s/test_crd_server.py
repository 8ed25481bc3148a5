"""The RktTask CRD against the real kube-apiserver: examples accepted, every invalid case refused
with its field named (the same cases the pydantic model refuses), kubectl explain, printer
columns, field selector on spec.nodeName, status subresource and nodeName immutability."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fixtures_k8s import Kubectl
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.model.status import Condition, PortStatus, RktTaskStatus, port_summary
from spec_cases import (
    BASE_SPEC,
    INVALID,
    Invalid,
    example_files,
    example_tasks,
    invalid_spec,
    manifest,
)

pytestmark = pytest.mark.k8s


def _apply(kubectl: Kubectl, namespace: str, body: dict[str, Any], *, dry_run: bool) -> Any:
    args = ["apply", "-n", namespace, "-f", "-", "-o", "json"]
    if dry_run:
        args.append("--dry-run=server")
    return kubectl(*args, input=json.dumps(body), check=False)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_accepted_by_server(kubectl: Kubectl, namespace: str, path: Path) -> None:
    done = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
    assert done.returncode == 0, done.stderr
    for task in example_tasks(path):
        assert f"rkttask.rktoperator.io/{task['metadata']['name']} created" in done.stdout


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_spec_refused_naming_field(kubectl: Kubectl, namespace: str, case: Invalid) -> None:
    done = _apply(kubectl, namespace, manifest(invalid_spec(case)), dry_run=True)
    assert done.returncode != 0, f"accepted: {invalid_spec(case)}"
    assert case.server in done.stderr, done.stderr


def test_base_spec_of_the_invalid_cases_is_accepted(kubectl: Kubectl, namespace: str) -> None:
    done = _apply(kubectl, namespace, manifest(BASE_SPEC), dry_run=True)
    assert done.returncode == 0, done.stderr


def test_server_defaults_agree_with_the_model(kubectl: Kubectl, namespace: str) -> None:
    done = _apply(kubectl, namespace, manifest(BASE_SPEC, "defaults"), dry_run=False)
    assert done.returncode == 0, done.stderr
    stored = json.loads(done.stdout)["spec"]
    assert stored["restartPolicy"] == "Always"
    assert stored["killTimeoutSeconds"] == 5
    assert stored["ports"][0]["protocol"] == "TCP"
    assert stored["volumes"][0]["readOnly"] is False
    assert RktTaskSpec.model_validate(stored) == RktTaskSpec.model_validate(BASE_SPEC)


def test_explain_prints_descriptions(kubectl: Kubectl) -> None:
    out = kubectl("explain", "rkttask.spec.ports").stdout
    assert "Ports of the image to publish and report" in out
    assert "hostPort" in out
    assert "Host port forwarded to this port" in out
    out = kubectl("explain", "rkttask.spec.resources.limits.memory").stdout
    assert "--memory=<n>M" in out


def _status(uuid: str) -> dict[str, Any]:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    ports = [PortStatus(name="client", container_port=2379, host_port=8080)]
    status = RktTaskStatus(
        phase="Running",
        uuid=uuid,
        ip="172.16.28.2",
        port_map={"client": 2379},
        ports=ports,
        port_summary=port_summary(ports),
        restarts=2,
        started_at=now,
        node_name="node-a",
        observed_generation=1,
        conditions=[
            Condition(
                type="Ready",
                status="True",
                observed_generation=1,
                last_transition_time=now,
                reason="PodRunning",
                message="",
            )
        ],
    )
    return status.model_dump(mode="json", exclude_none=True)


def test_printer_columns_and_status_subresource(kubectl: Kubectl, namespace: str) -> None:
    done = _apply(kubectl, namespace, manifest(BASE_SPEC, "shown"), dry_run=False)
    assert done.returncode == 0, done.stderr
    uuid = "4b7a6ff1-6c7e-4a55-9d5f-1f1f3bd1b7a2"
    patch = json.dumps({"status": _status(uuid)})
    kubectl(
        "patch", "rkttask", "shown", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", patch,
    )  # fmt: skip
    table = kubectl("get", "rkt", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "NODE", "PHASE", "UUID", "IP", "RESTARTS", "READY", "AGE"]
    assert table[1].split()[:7] == ["shown", "node-a", "Running", uuid, "172.16.28.2", "2", "True"]
    wide = kubectl("get", "rkt", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["IMAGE", "PORTS", "RESTART-AT"]
    # (no back-off: an empty cell)
    assert wide[1].split()[-2:] == ["example.com/kv-server:1.0", "client:8080->2379/TCP"]
    # a pod waiting to be restarted shows when (status.backoff)
    backoff = {"step": 2, "restartAt": "2026-12-03T10:00:40Z"}
    kubectl(
        "patch", "rkttask", "shown", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"backoff": backoff}}),
    )  # fmt: skip
    wide = kubectl("get", "rkt", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[1].split()[-1] == "2026-12-03T10:00:40Z"


def test_status_is_validated_by_the_server(kubectl: Kubectl, namespace: str) -> None:
    done = _apply(kubectl, namespace, manifest(BASE_SPEC, "badstatus"), dry_run=False)
    assert done.returncode == 0, done.stderr
    patch = json.dumps({"status": {"phase": "Exploded"}})
    done = kubectl(
        "patch", "rkttask", "badstatus", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", patch, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "status.phase" in done.stderr


def test_main_endpoint_ignores_status(kubectl: Kubectl, namespace: str) -> None:
    body = manifest(BASE_SPEC, "withstatus") | {"status": {"phase": "Running"}}
    done = _apply(kubectl, namespace, body, dry_run=False)
    assert done.returncode == 0, done.stderr
    assert "status" not in json.loads(done.stdout)


def test_field_selector_on_node_name(kubectl: Kubectl, namespace: str) -> None:
    for name, node in (("on-a", "node-a"), ("on-b", "node-b")):
        spec = BASE_SPEC | {"nodeName": node}
        assert _apply(kubectl, namespace, manifest(spec, name), dry_run=False).returncode == 0
    out = kubectl(
        "get", "rkt", "-n", namespace, "--field-selector", "spec.nodeName=node-b", "-o", "name"
    ).stdout.split()
    assert out == ["rkttask.rktoperator.io/on-b"]


def test_node_name_is_immutable(kubectl: Kubectl, namespace: str) -> None:
    assert _apply(kubectl, namespace, manifest(BASE_SPEC, "pinned"), dry_run=False).returncode == 0
    done = kubectl(
        "patch", "rkttask", "pinned", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"nodeName": "node-b"}}), check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "spec.nodeName is immutable" in done.stderr
    # Other fields stay mutable.
    kubectl(
        "patch", "rkttask", "pinned", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"debug": True}}),
    )  # fmt: skip


def test_node_name_may_be_left_out_set_once_and_never_removed(
    kubectl: Kubectl, namespace: str
) -> None:
    spec = {k: v for k, v in BASE_SPEC.items() if k != "nodeName"}
    spec["nodeSelector"] = {"rktoperator.io/rkt": "true"}
    assert _apply(kubectl, namespace, manifest(spec, "floating"), dry_run=False).returncode == 0

    def patch(body: Any, kind: str = "merge") -> Any:
        return kubectl(
            "patch", "rkttask", "floating", "-n", namespace, f"--type={kind}",
            "-p", json.dumps(body), check=False,
        )  # fmt: skip

    assert patch({"spec": {"nodeName": "node-a"}}).returncode == 0  # the binder's write
    moved = patch({"spec": {"nodeName": "node-b"}})
    assert moved.returncode != 0
    assert "spec.nodeName is immutable" in moved.stderr
    removed = patch([{"op": "remove", "path": "/spec/nodeName"}], "json")
    assert removed.returncode != 0
    assert "spec.nodeName cannot be removed once set" in removed.stderr


def test_crd_is_established_and_structural(kubectl: Kubectl) -> None:
    crd = json.loads(kubectl("get", "crd", "rkttasks.rktoperator.io", "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions.get("NonStructuralSchema", "False") == "False"
    assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rkt-operator"
