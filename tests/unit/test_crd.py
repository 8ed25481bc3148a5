"""The CRD is generated from the models: the committed files equal the generator's output, the
schema is structural with a description, bounds and named messages everywhere, and every
example validates against the models and translates into rkt commands."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from rkt_operator.model import crd
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.rkt.argv import ResolvedVar, build_launch_plan
from rkt_operator.rkt.types import TaskDirs, TaskIdentity
from rkt_operator.settings import Settings
from spec_cases import REPO, example_files, example_tasks

CRD_PATH = REPO / crd.CRD_FILE
HELM_PATH = REPO / crd.HELM_CRD_FILE


def _version() -> dict[str, Any]:
    [version] = crd.build_crd()["spec"]["versions"]
    return version  # type: ignore[no-any-return]


def _nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _schema_nodes() -> list[tuple[str, dict[str, Any]]]:
    root = _version()["schema"]["openAPIV3Schema"]
    return list(_nodes(root["properties"]["spec"], "spec")) + list(
        _nodes(root["properties"]["status"], "status")
    )


def test_committed_crd_is_the_generated_one() -> None:
    assert CRD_PATH.read_text() == crd.render(), "run `make crds` and commit the result"


def test_helm_copy_is_identical() -> None:
    assert HELM_PATH.read_bytes() == CRD_PATH.read_bytes()


def test_module_prints_the_crd() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rkt_operator.model.crd"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert done.stdout == crd.render()
    assert yaml.safe_load(done.stdout) == crd.build_crd()


def test_identity_of_the_resource() -> None:
    body = crd.build_crd()
    assert body["metadata"]["name"] == "rkttasks.rktoperator.io"
    assert body["metadata"]["labels"] == {"app.kubernetes.io/part-of": "rkt-operator"}
    spec = body["spec"]
    assert spec["group"] == "rktoperator.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "RktTask",
        "listKind": "RktTaskList",
        "plural": "rkttasks",
        "singular": "rkttask",
        "shortNames": ["rkt"],
        "categories": ["rkt"],
    }
    version = _version()
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert version["selectableFields"] == [{"jsonPath": ".spec.nodeName"}]
    root = version["schema"]["openAPIV3Schema"]
    assert root["required"] == ["spec"]
    assert "required" not in root["properties"]["status"]
    assert root["properties"]["metadata"] == {"type": "object"}


def test_printer_columns() -> None:
    columns = [(c["name"], c.get("priority", 0)) for c in _version()["additionalPrinterColumns"]]
    assert columns == [
        ("Node", 0),
        ("Phase", 0),
        ("UUID", 0),
        ("IP", 0),
        ("Restarts", 0),
        ("Ready", 0),
        ("Age", 0),
        ("Image", 1),
        ("Ports", 1),
        ("Restart-At", 1),
    ]
    paths = {c["name"]: c["jsonPath"] for c in _version()["additionalPrinterColumns"]}
    assert paths["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert paths["Ports"] == ".status.portSummary"
    assert paths["Restart-At"] == ".status.backoff.restartAt"


def test_every_field_has_a_description() -> None:
    missing = [path for path, node in _schema_nodes() if not node.get("description")]
    # list items and map values are described by their field
    assert [p for p in missing if not p.endswith(("[]", "{}"))] == []


def test_schema_is_structural() -> None:
    for path, node in _schema_nodes():
        assert not {"$ref", "title", "allOf", "oneOf", "not", "uniqueItems", "$defs"} & set(node), (
            path
        )
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:  # only int-or-string, the one union Kubernetes allows
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
        else:
            assert node.get("type") in ("object", "array", "string", "integer", "boolean"), path


def test_strings_and_lists_are_bounded_for_cel_costs() -> None:
    for path, node in _schema_nodes():
        if node.get("type") == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_every_cel_rule_has_a_message_naming_its_field() -> None:
    rules = [
        (path, rule)
        for path, node in _schema_nodes()
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 15
    for path, rule in rules:
        assert rule["message"].startswith("spec."), (path, rule)
        assert rule["rule"], path


def test_lists_declare_their_merge_semantics() -> None:
    kinds = {path: node.get("x-kubernetes-list-type") for path, node in _schema_nodes()}
    assert kinds["spec.env"] == "map"
    assert kinds["spec.ports"] == "map"
    assert kinds["spec.volumes"] == "map"
    assert kinds["spec.insecureOptions"] == "set"
    assert kinds["spec.args"] == "atomic"
    assert kinds["status.conditions"] == "map"
    arrays = [path for path, node in _schema_nodes() if node.get("type") == "array"]
    assert [path for path in arrays if kinds[path] is None] == []


def test_defaults_only_in_spec() -> None:
    defaults = {path: node["default"] for path, node in _schema_nodes() if "default" in node}
    assert defaults == {
        "spec.env[].valueFrom.secretKeyRef.optional": False,
        "spec.env[].valueFrom.configMapKeyRef.optional": False,
        "spec.ports[].protocol": "TCP",
        "spec.volumes[].readOnly": False,
        "spec.noOverlay": False,
        "spec.debug": False,
        "spec.killTimeoutSeconds": 5,
        "spec.restartPolicy": "Always",
        "spec.progressDeadlineSeconds": 600,
        **{
            f"spec.{probe}.{key}": value
            for probe in ("readinessProbe", "livenessProbe")
            for key, value in (
                ("initialDelaySeconds", 0),
                ("periodSeconds", 10),
                ("timeoutSeconds", 1),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            )
        },
        "spec.logs.maxFiles": 10,
        "spec.logs.maxFileSizeMB": 10,
        "spec.tolerations[].operator": "Equal",
    }


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_is_valid_and_translates(path: Path) -> None:
    tasks = example_tasks(path)
    assert tasks, f"{path.name} has no RktTask"
    for task in tasks:
        assert task["apiVersion"] == "rktoperator.io/v1alpha1"
        assert "status" not in task
        spec = RktTaskSpec.model_validate(task["spec"])
        # Either pinned to a demo node or placed by the binder through a selector.
        assert spec.node_name in ("node-a", "node-b") or spec.node_selector
        identity = TaskIdentity("default", task["metadata"]["name"], "0000-1111", 1)
        env = [
            ResolvedVar(v.name, v.value or "resolved", secret=bool(v.value_from)) for v in spec.env
        ]
        plan = build_launch_plan(
            spec,
            settings=Settings(),
            identity=identity,
            dirs=TaskDirs.for_task(Path("/var/lib/tasks"), identity),
            env=env,
        )
        assert spec.image in plan.prepare


def test_examples_cover_the_issue() -> None:
    specs = {
        p.name: RktTaskSpec.model_validate(example_tasks(p)[0]["spec"]) for p in example_files()
    }
    assert specs["etcd-service.yaml"].ports[0].name == "client"
    assert specs["etcd-service.yaml"].restart_policy == "Always"
    assert specs["etcd-service.yaml"].image == "example.com/kv-server:1.0"
    assert specs["batch-job.yaml"].restart_policy == "Never"
    assert specs["batch-job.yaml"].image == "example.com/busybox:1.35"
    assert specs["host-volume.yaml"].volumes
    secret_refs = [
        e for e in specs["env-from-secret.yaml"].env if e.value_from and e.value_from.secret_key_ref
    ]
    assert secret_refs
    with (REPO / "examples" / "env-from-secret.yaml").open() as stream:
        kinds = [d["kind"] for d in yaml.safe_load_all(stream) if d]
    assert kinds == ["Secret", "RktTask"]


@pytest.mark.parametrize("field", ["nodeName", "image", "command", "trustPrefix", "user", "group"])
def test_model_enforces_the_crd_length_bounds(field: str) -> None:
    limit = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][field][
        "maxLength"
    ]
    base = {"nodeName": "node-a", "image": "example.com/app"}
    RktTaskSpec.model_validate(base | {field: "a" * limit})
    with pytest.raises(ValidationError):
        RktTaskSpec.model_validate(base | {field: "a" * (limit + 1)})
