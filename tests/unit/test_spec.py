"""The RktTask spec and status models: every field accepted and defaulted, every invalid case
refused with the field named (the same cases the API server refuses, tests/spec_cases.py),
quantities parsed exactly, Nomad's messages where they still apply."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from pydantic import ValidationError

from rkt_operator.model.quantity import (
    QuantityError,
    cpu_millicores,
    memory_megabytes,
    parse_quantity,
)
from rkt_operator.model.spec import NOMAD_OPTION_MAP, RktTaskSpec, validation_problems
from rkt_operator.model.status import Condition, PortStatus, RktTaskStatus, port_summary
from spec_cases import BASE_SPEC, INVALID, Invalid, invalid_spec

FULL_SPEC: dict[str, Any] = {
    "nodeName": "node-a.example.com",
    "image": "example.com/kv-server:1.0,os=linux",
    "command": "/usr/bin/kv",
    "args": ["--listen", "$(ADDR)", ""],
    "env": [
        {"name": "ADDR", "value": "0.0.0.0:2379"},
        {"name": "EMPTY", "value": ""},
        {
            "name": "PW",
            "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": False}},
        },
        {
            "name": "LEVEL",
            "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "log.level", "optional": True}},
        },
        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "app.mode", "value": "x"},
    ],
    "trustPrefix": "example.com/kv-server",
    "insecureOptions": ["ondisk", "capabilities"],
    "dnsServers": ["10.0.0.2", "2001:db8::1"],
    "dnsSearchDomains": ["svc.cluster.local", "example.org."],
    "net": ["default", "backend:IP=10.1.0.5;K2=V2"],
    "ports": [
        {"name": "client", "hostPort": 2379, "protocol": "TCP", "hostIP": "127.0.0.1"},
        {"name": "53-udp", "hostPort": 53, "protocol": "UDP"},
        {"name": "metrics", "protocol": "TCP"},
    ],
    "volumes": [
        {"name": "data", "hostPath": "/srv/kv", "mountPath": "/var/lib/kv", "readOnly": False},
        {"name": "conf", "hostPath": "/etc/kv", "mountPath": "/etc/kv", "readOnly": True},
    ],
    "resources": {"limits": {"memory": "256Mi", "cpu": 2}, "requests": {"memory": "128Mi"}},
    "user": "1000",
    "group": "kv",
    "noOverlay": True,
    "debug": True,
    "killTimeoutSeconds": 20,
    "restartPolicy": "OnFailure",
    "progressDeadlineSeconds": 120,
    "nodeSelector": {"rktoperator.io/rkt": "true", "topology.kubernetes.io/zone": "a"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "disk", "operator": "In", "values": ["ssd", "nvme"]},
                            {"key": "cores", "operator": "Gt", "values": ["3"]},
                            {"key": "gpu", "operator": "DoesNotExist", "values": []},
                        ],
                        "matchFields": [
                            {"key": "metadata.name", "operator": "NotIn", "values": ["n9"]}
                        ],
                    }
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 20,
                    "preference": {
                        "matchExpressions": [{"key": "r", "operator": "Exists", "values": []}],
                        "matchFields": [],
                    },
                }
            ],
        }
    },
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "rkt", "effect": "NoSchedule"},
        {"operator": "Exists"},
        {"key": "gone", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
}


def test_every_field_round_trips() -> None:
    spec = RktTaskSpec.model_validate(FULL_SPEC)
    assert spec.model_dump(exclude_none=True) == FULL_SPEC
    assert spec.ports[0].host_ip == "127.0.0.1"
    assert spec.env[2].value_from is not None
    assert spec.env[2].value_from.secret_key_ref is not None
    assert spec.env[2].value_from.secret_key_ref.key == "password"


def test_defaults() -> None:
    spec = RktTaskSpec.model_validate({"nodeName": "node-a", "image": "example.com/app"})
    assert spec.command is None
    assert spec.args == []
    assert spec.env == []
    assert spec.trust_prefix is None
    assert spec.insecure_options == []
    assert spec.dns_servers == []
    assert spec.net == []
    assert spec.ports == []
    assert spec.volumes == []
    assert spec.resources is None
    assert spec.user is None
    assert spec.group is None
    assert spec.no_overlay is False
    assert spec.debug is False
    assert spec.kill_timeout_seconds == 5
    assert spec.restart_policy == "Always"
    port = RktTaskSpec.model_validate(BASE_SPEC).ports[0]
    assert port.protocol == "TCP"
    assert port.host_ip is None
    assert RktTaskSpec.model_validate(BASE_SPEC).volumes[0].read_only is False


def test_snake_case_names_are_accepted_too() -> None:
    spec = RktTaskSpec.model_validate(
        {"node_name": "n", "image": "example.com/a", "kill_timeout_seconds": 3}
    )
    assert spec.node_name == "n"
    assert spec.kill_timeout_seconds == 3


def test_spec_is_immutable() -> None:
    spec = RktTaskSpec.model_validate(BASE_SPEC)
    with pytest.raises(ValidationError):
        spec.image = "other"  # type: ignore[misc]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_case_refused_naming_field(case: Invalid) -> None:
    with pytest.raises(ValidationError) as caught:
        RktTaskSpec.model_validate(invalid_spec(case))
    locations = [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]
    if case.model:
        assert any(loc.startswith(case.model) for loc in locations), locations
    else:  # a rule across fields: reported on the spec itself, the message names them
        assert "" in locations


def test_base_spec_is_valid() -> None:
    RktTaskSpec.model_validate(BASE_SPEC)


def _message(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        RktTaskSpec.model_validate({"nodeName": "n", "image": "example.com/a"} | spec)
    return " | ".join(message for _, message in validation_problems(caught.value))


@pytest.mark.parametrize(
    "image",
    [
        "example.com/app",
        "example.com/app:1.0.0",
        "example.com/app:v2.0.4,os=linux,arch=amd64",
        "coreos.com/etcd:v2.0.4",
        "sha512-0123456789abcdef",
        "/var/lib/images/app.aci",
        "file:///var/lib/images/app.aci",
        "https://images.example.com/app-1.0.aci",
        "http://images.example.com/app.aci",
        "docker://redis:3.2-alpine",
        "docker://registry.example.com:5000/team/app:1.2",
    ],
)
def test_image_forms_rkt_accepts(image: str) -> None:
    assert RktTaskSpec.model_validate({"nodeName": "n", "image": image}).image == image


@pytest.mark.parametrize(
    "image",
    ["Example.com/App", "app.aci", "./app.aci", "ftp://host/app.aci", "a:1:2", "docker://", " x"],
)
def test_image_forms_refused(image: str) -> None:
    assert "image" in _message({"image": image}) or "relative" in _message({"image": image})


def test_empty_image_gives_nomads_message() -> None:
    assert _message({"image": ""}) == 'field "image" is required, but no value was found'


@pytest.mark.parametrize(
    ("server", "ok"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("host", True),
        ("none", True),
        ("::ffff:1.2.3.4", False),
        ("fe80::1%eth0", False),
        ("010.1.1.1", False),
        ("8.8.8", False),
        ("Host", False),
    ],
)
def test_dns_server_values(server: str, ok: bool) -> None:
    spec = {"nodeName": "n", "image": "example.com/a", "dnsServers": [server]}
    if ok:
        assert RktTaskSpec.model_validate(spec).dns_servers == [server]
    else:
        message = _message({"dnsServers": [server]})
        assert message == f'invalid ip address for container dns server "{server}"'


def test_env_name_with_dash_explains_why() -> None:
    message = _message({"env": [{"name": "LOG-LEVEL", "value": "debug"}]})
    assert "'-' is refused because rkt rejects it, Nomad issue #2358" in message


@pytest.mark.parametrize("name", ["A", "_a", "a.b", "A_1", "x.y.z"])
def test_env_names_accepted(name: str) -> None:
    spec = {"nodeName": "n", "image": "example.com/a", "env": [{"name": name, "value": "v"}]}
    assert RktTaskSpec.model_validate(spec).env[0].name == name


def test_env_value_empty_with_value_from_is_allowed() -> None:
    env = [{"name": "X", "value": "", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    RktTaskSpec.model_validate({"nodeName": "n", "image": "example.com/a", "env": env})


@pytest.mark.parametrize(
    "path",
    [
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "metadata.labels['app.kubernetes.io/name']",
        "metadata.annotations['note']",
    ],
)
def test_field_ref_paths(path: str) -> None:
    env = [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]
    RktTaskSpec.model_validate({"nodeName": "n", "image": "example.com/a", "env": env})


def test_cross_field_messages_name_both_fields() -> None:
    assert "dnsSearchDomains" in _message({"dnsServers": ["host"], "dnsSearchDomains": ["a"]})
    message = _message({"net": ["none"], "ports": [{"name": "a", "hostPort": 1}]})
    assert "hostPort" in message
    assert "net [none]" in message


def test_ports_same_host_port_on_different_protocol_or_ip_is_fine() -> None:
    ports = [
        {"name": "a", "hostPort": 53},
        {"name": "b", "hostPort": 53, "protocol": "UDP"},
        {"name": "c", "hostPort": 53, "hostIP": "127.0.0.1"},
    ]
    RktTaskSpec.model_validate({"nodeName": "n", "image": "example.com/a", "ports": ports})


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/alloc", "reserved for the task directories"),
        ("/secrets/", "is not an absolute, normalised path"),
        ("/local/.", "must not contain '.' or '..' segments"),
        ("/data//x", "is not an absolute, normalised path"),
    ],
)
def test_mount_paths_reserved_or_not_normalised(path: str, text: str) -> None:
    volume = {"name": "v", "hostPath": "/srv", "mountPath": path}
    with pytest.raises(ValidationError) as caught:
        RktTaskSpec.model_validate({"nodeName": "n", "image": "example.com/a", "volumes": [volume]})
    [(field, message)] = validation_problems(caught.value)
    assert field == "spec.volumes[0].mountPath"
    assert text in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("debug", "true"), ("noOverlay", 1), ("killTimeoutSeconds", "5"), ("args", ("a",))],
)
def test_no_type_coercion(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        RktTaskSpec.model_validate({"nodeName": "n", "image": "example.com/a", field: value})


def test_validation_problems_paths() -> None:
    with pytest.raises(ValidationError) as caught:
        RktTaskSpec.model_validate(
            {"nodeName": "n", "image": "example.com/a", "ports": [{"name": "a", "hostPort": 0}]}
        )
    assert validation_problems(caught.value) == [
        ("spec.ports[0].hostPort", "Input should be greater than or equal to 1")
    ]


def test_nomad_option_map_covers_every_field() -> None:
    mapped = {row[0] for row in NOMAD_OPTION_MAP}
    top_level = {field.alias for field in RktTaskSpec.model_fields.values()}
    resources = {"resources.limits.memory", "resources.limits.cpu", "resources.requests"}
    assert mapped - resources == top_level - {"resources"}


# -- quantities -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("128Mi", Fraction(128 * 2**20)),
        ("1G", Fraction(10**9)),
        ("1Gi", Fraction(2**30)),
        ("500m", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("2", Fraction(2)),
        (2, Fraction(2)),
        ("1e3", Fraction(1000)),
        ("1E-3", Fraction(1, 1000)),
        ("1.5Ki", Fraction(1536)),
        ("100u", Fraction(1, 10**4)),
        ("5n", Fraction(5, 10**9)),
        ("+1k", Fraction(1000)),
        ("-1M", Fraction(-(10**6))),
        ("3.", Fraction(3)),
    ],
)
def test_parse_quantity(text: int | str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1.5.5", "Mi", "1mi", "1 Gi", "1KB", "1e1.5", "1e99", "0x10"])
def test_parse_quantity_refuses(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize("value", [True, 1.5, None])
def test_parse_quantity_refuses_other_types(value: Any) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(value)


def test_roundings_are_upwards() -> None:
    assert memory_megabytes("1000000") == 1
    assert memory_megabytes("1000001") == 2
    assert memory_megabytes("128Mi") == 135
    assert cpu_millicores("1") == 1000
    assert cpu_millicores("1.0001") == 1001
    assert cpu_millicores("1n") == 1


@pytest.mark.parametrize("value", [0, "0", "0.0", "-1", "2Ei", True, 1.0])
def test_memory_limit_refused(value: Any) -> None:
    message = _message({"resources": {"limits": {"memory": value}}})
    assert message.startswith("memory ")


@pytest.mark.parametrize("value", ["1n", "1M", 1000000])
def test_cpu_limit_bounds_accepted(value: Any) -> None:
    spec = {"nodeName": "n", "image": "example.com/a", "resources": {"limits": {"cpu": value}}}
    RktTaskSpec.model_validate(spec)


# -- status ------------------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _condition(**values: Any) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "2024-05-01T12:00:00Z",
        "reason": "PodRunning",
        "message": "",
    } | values


def test_status_round_trips_in_api_form() -> None:
    body = {
        "phase": "Running",
        "uuid": "4b7a6ff1-6c7e-4a55-9d5f-1f1f3bd1b7a2",
        "ip": "172.16.28.2",
        "portMap": {"client": 2379},
        "ports": [{"name": "client", "containerPort": 2379, "hostPort": 8080, "protocol": "TCP"}],
        "portSummary": "client:8080->2379/TCP",
        "exitCode": 0,
        "restarts": 1,
        "startedAt": "2024-05-01T12:00:00Z",
        "finishedAt": "2024-05-01T12:00:05Z",
        "nodeName": "node-a",
        "observedGeneration": 3,
        "message": "running",
        "conditions": [_condition(observedGeneration=3)],
    }
    status = RktTaskStatus.model_validate(body)
    assert status.started_at == NOW
    assert status.model_dump(mode="json", exclude_none=True) == body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phase": "Exploded"}, "phase"),
        ({"restarts": -1}, "restarts"),
        ({"startedAt": "2024-05-01T12:00:00"}, "startedAt"),  # no time zone
        ({"portMap": {"a": 0}}, "portMap"),
        ({"conditions": [_condition(status="Yes")]}, "conditions.0.status"),
        ({"conditions": [_condition(reason="not camel")]}, "conditions.0.reason"),
        ({"conditions": [_condition(reason="")]}, "conditions.0.reason"),
        ({"conditions": [_condition(), _condition()]}, "conditions"),
        ({"conditions": [{"type": "Ready", "status": "True"}]}, "conditions.0"),
        ({"ports": [{"name": "a"}, {"name": "a"}]}, "ports"),
        ({"podIP": "1.2.3.4"}, "podIP"),
    ],
)
def test_status_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RktTaskStatus.model_validate(change)
    locations = [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]
    assert any(loc.startswith(field) for loc in locations), locations


def test_condition_model() -> None:
    condition = Condition.model_validate(_condition(type="example.com/Custom"))
    assert condition.last_transition_time == NOW


@pytest.mark.parametrize(
    ("ports", "text"),
    [
        ([PortStatus(name="client", container_port=2379, host_port=8080)], "client:8080->2379/TCP"),
        (
            [
                PortStatus(name="dns", container_port=53, host_port=53, host_ip="127.0.0.1"),
                PortStatus(name="m", container_port=9090, protocol="UDP"),
            ],
            "dns:127.0.0.1:53->53/TCP,m:9090/UDP",
        ),
        ([PortStatus(name="x", host_port=80)], "x:80->?/TCP"),
        ([], ""),
    ],
)
def test_port_summary(ports: list[PortStatus], text: str) -> None:
    assert port_summary(ports) == text
