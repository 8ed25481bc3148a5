"""The probe fields of the spec (rkt_operator.model.probes): defaults as in Kubernetes, the
CRD's bounds enforced by the model too, successThreshold 1 for liveness, exec the only
handler."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rkt_operator.model import crd
from rkt_operator.model.probes import LivenessProbe, Probe
from rkt_operator.model.spec import RktTaskSpec, validation_problems

BASE: dict[str, Any] = {"nodeName": "node-a", "image": "example.com/app"}
CHECK = {"exec": {"command": ["/bin/sh", "-c", "test -f /local/ready"]}}


def _spec(**fields: Any) -> RktTaskSpec:
    return RktTaskSpec.model_validate(BASE | fields)


def _problems(**fields: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        _spec(**fields)
    return validation_problems(caught.value)


def _probe_schema(kind: str) -> dict[str, Any]:
    [version] = crd.build_crd()["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"][kind]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["readinessProbe", "livenessProbe"])
def test_defaults_are_kubernetes_ones(kind: str) -> None:
    spec = _spec(**{kind: CHECK})
    probe = spec.readiness_probe if kind == "readinessProbe" else spec.liveness_probe
    assert probe is not None
    assert probe.exec_.command == ["/bin/sh", "-c", "test -f /local/ready"]
    assert (
        probe.initial_delay_seconds,
        probe.period_seconds,
        probe.timeout_seconds,
        probe.success_threshold,
        probe.failure_threshold,
    ) == (0, 10, 1, 1, 3)


def test_no_probe_by_default() -> None:
    spec = _spec()
    assert spec.readiness_probe is None
    assert spec.liveness_probe is None


def test_serialised_with_kubernetes_names() -> None:
    spec = _spec(readinessProbe=CHECK | {"periodSeconds": 2})
    dumped = spec.model_dump(exclude_defaults=True)
    assert dumped["readinessProbe"] == CHECK | {"periodSeconds": 2}
    assert RktTaskSpec.model_validate(dumped) == spec


def test_liveness_success_threshold_must_be_1() -> None:
    assert _problems(livenessProbe=CHECK | {"successThreshold": 2}) == [
        ("spec.livenessProbe", "successThreshold must be 1 for a liveness probe")
    ]
    assert _spec(livenessProbe=CHECK | {"successThreshold": 1}).liveness_probe is not None
    # readiness may ask for several successes
    readiness = _spec(readinessProbe=CHECK | {"successThreshold": 3}).readiness_probe
    assert readiness is not None
    assert readiness.success_threshold == 3


def test_liveness_rule_is_in_the_crd() -> None:
    rules = _probe_schema("livenessProbe")["x-kubernetes-validations"]
    assert rules == [
        {
            "fieldPath": ".successThreshold",
            "message": "spec.livenessProbe.successThreshold must be 1",
            "rule": "!has(self.successThreshold) || self.successThreshold == 1",
        }
    ]
    assert "x-kubernetes-validations" not in _probe_schema("readinessProbe")


def test_exec_is_the_only_handler() -> None:
    problems = _problems(readinessProbe={"tcpSocket": {"port": 80}})
    fields = {field for field, _ in problems}
    assert fields == {"spec.readinessProbe.exec", "spec.readinessProbe.tcpSocket"}
    assert _problems(livenessProbe={"exec": {"command": []}})[0][0] == (
        "spec.livenessProbe.exec.command"
    )
    assert _problems(livenessProbe={"exec": {"command": ["", "x"]}}) == [
        ("spec.livenessProbe.exec.command", "command[0] (the executable) must not be empty")
    ]
    # arguments may be empty strings, as in a Pod
    _spec(livenessProbe={"exec": {"command": ["/bin/sh", "-c", ""]}})


@pytest.mark.parametrize("kind", ["readinessProbe", "livenessProbe"])
@pytest.mark.parametrize(
    "field",
    [
        "initialDelaySeconds",
        "periodSeconds",
        "timeoutSeconds",
        "successThreshold",
        "failureThreshold",
    ],
)
def test_model_enforces_the_crd_bounds(kind: str, field: str) -> None:
    node = _probe_schema(kind)["properties"][field]
    low, high = node["minimum"], node["maximum"]
    if not (kind == "livenessProbe" and field == "successThreshold"):
        _spec(**{kind: CHECK | {field: low}})
        _spec(**{kind: CHECK | {field: high}})
    for bad in (low - 1, high + 1):
        assert _problems(**{kind: CHECK | {field: bad}})[0][0].startswith(f"spec.{kind}")
    assert _problems(**{kind: CHECK | {field: "5"}})  # no coercion, as the API server


def test_minimums_are_the_kubernetes_ones() -> None:
    properties = _probe_schema("readinessProbe")["properties"]
    minimums = {name: node["minimum"] for name, node in properties.items() if "minimum" in node}
    assert minimums == {
        "initialDelaySeconds": 0,
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 1,
    }


def test_command_bounds_match_the_crd() -> None:
    node = _probe_schema("readinessProbe")["properties"]["exec"]["properties"]["command"]
    items, length = node["maxItems"], node["items"]["maxLength"]
    Probe.model_validate({"exec": {"command": ["x"] * items}})
    Probe.model_validate({"exec": {"command": ["x" * length]}})
    with pytest.raises(ValidationError):
        Probe.model_validate({"exec": {"command": ["x"] * (items + 1)}})
    with pytest.raises(ValidationError):
        Probe.model_validate({"exec": {"command": ["x" * (length + 1)]}})
    with pytest.raises(ValidationError):
        LivenessProbe.model_validate({"exec": {"command": ["a\x00b"]}})


def test_every_probe_field_is_described() -> None:
    for kind in ("readinessProbe", "livenessProbe"):
        schema = _probe_schema(kind)
        assert schema["description"]
        for name, node in schema["properties"].items():
            assert node["description"], (kind, name)
        assert schema["properties"]["exec"]["properties"]["command"]["description"]
