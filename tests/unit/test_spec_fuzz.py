"""Property tests: whatever JSON-like value arrives as a spec, the model answers with a
``pydantic.ValidationError`` or a valid spec (never another exception); and every valid spec
translates into rkt commands or a ``SpecError``, with argument lists rkt can take."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rkt_operator.errors import SpecError
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.model.status import RktTaskStatus
from rkt_operator.rkt.argv import ResolvedVar, build_launch_plan, kill_timeout
from rkt_operator.rkt.types import TaskDirs, TaskIdentity
from rkt_operator.settings import Settings

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
SPEC_KEYS = [field.alias or name for name, field in RktTaskSpec.model_fields.items()]
NESTED_KEYS = [
    "name", "value", "valueFrom", "secretKeyRef", "configMapKeyRef", "fieldRef", "fieldPath",
    "key", "optional", "hostPort", "protocol", "hostIP", "hostPath", "mountPath", "readOnly",
    "limits", "memory", "cpu",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["host", "none", "TCP", "/a", "1Gi", "500m", "$(X)", "0", "\x00", "-"])
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(SPEC_KEYS + NESTED_KEYS) | st.text(max_size=8), children)
    ),
    max_leaves=25,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(SPEC_KEYS) | st.text(max_size=8), json_like, max_size=8))
def test_any_dict_is_a_spec_or_a_validation_error(body: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationError):
        RktTaskSpec.model_validate(body)


@FUZZ
@given(json_like)
def test_any_value_is_a_status_or_a_validation_error(body: Any) -> None:
    with contextlib.suppress(ValidationError):
        RktTaskStatus.model_validate(body)


# -- near-valid specs: values drawn from what each field accepts, plus edge cases -----------------

names = st.sampled_from(["a", "data", "client", "6379-tcp", "x1", "dup"])
paths = st.sampled_from(["/srv/data", "/srv/data2", "/tmp/x", "/etc/app", "/data", "/a/b/c"])
ips = st.sampled_from(["8.8.8.8", "10.0.0.2", "2001:db8::1", "::1", "127.0.0.1"])
env_names = st.sampled_from(["A", "B", "PORT", "app.level", "_X", "TOKEN"])
texts = st.text(max_size=12)

ports = st.fixed_dictionaries(
    {"name": names},
    optional={
        "hostPort": st.integers(min_value=1, max_value=65535),
        "protocol": st.sampled_from(["TCP", "UDP"]),
        "hostIP": st.sampled_from(["127.0.0.1", "192.0.2.1", "10.1.2.3"]),
    },
)
volumes = st.fixed_dictionaries(
    {"name": names, "hostPath": paths, "mountPath": paths}, optional={"readOnly": st.booleans()}
)
sources = st.one_of(
    st.fixed_dictionaries({"secretKeyRef": st.fixed_dictionaries({"name": names, "key": names})}),
    st.fixed_dictionaries(
        {"configMapKeyRef": st.fixed_dictionaries({"name": names, "key": names})}
    ),
    st.just({"fieldRef": {"fieldPath": "metadata.name"}}),
)
env_vars = st.one_of(
    st.fixed_dictionaries({"name": env_names, "value": texts}),
    st.fixed_dictionaries({"name": env_names, "valueFrom": sources}),
)
quantities = st.one_of(
    st.integers(min_value=1, max_value=10**12),
    st.sampled_from(["128Mi", "1G", "500m", "0.5", "2", "1e3", "100u", "3.", "1Ei", "1M"]),
)
specs = st.fixed_dictionaries(
    {
        "nodeName": st.sampled_from(["node-a", "node-b.example.com"]),
        "image": st.sampled_from(
            ["example.com/app:1.0", "docker://redis:3.2-alpine", "/srv/app.aci", "file:///a.aci"]
        ),
    },
    optional={
        "command": st.sampled_from(["/bin/sh", "sleep", "/usr/bin/my app"]),
        "args": st.lists(
            st.text(max_size=15) | st.sampled_from(["$(A)", "$$(A)", "$("]), max_size=5
        ),
        "env": st.lists(env_vars, max_size=5),
        "trustPrefix": st.sampled_from(["example.com/app", "coreos.com/etcd"]),
        "insecureOptions": st.lists(
            st.sampled_from(["none", "image", "tls", "http", "all"]), max_size=3
        ),
        "dnsServers": st.one_of(st.lists(ips, max_size=3), st.sampled_from([["host"], ["none"]])),
        "dnsSearchDomains": st.lists(st.sampled_from(["example.com", "svc.local."]), max_size=2),
        "net": st.one_of(
            st.sampled_from([["host"], ["none"], ["default"], ["default", "mynet:IP=10.1.0.5"]]),
            st.lists(st.sampled_from(["default", "backend", "all"]), max_size=2),
        ),
        "ports": st.lists(ports, max_size=4),
        "volumes": st.lists(volumes, max_size=3),
        "resources": st.fixed_dictionaries(
            {}, optional={"limits": st.fixed_dictionaries({}, optional={"memory": quantities})}
        ),
        "user": st.sampled_from(["nobody", "1000"]),
        "group": st.sampled_from(["nogroup", "0"]),
        "noOverlay": st.booleans(),
        "debug": st.booleans(),
        "killTimeoutSeconds": st.integers(min_value=0, max_value=86400),
        "restartPolicy": st.sampled_from(["Always", "OnFailure", "Never"]),
    },
)
node_settings = st.builds(
    Settings,
    volumes_enabled=st.booleans(),
    volumes_allowed_host_paths=st.sampled_from([(), ("/srv",), ("/srv/data", "/tmp")]),
    max_kill_timeout_seconds=st.sampled_from([0.0, 0.5, 30.0]),
)
resolved = st.lists(
    st.builds(
        ResolvedVar,
        name=env_names | st.sampled_from(["BAD-NAME", ""]),
        value=st.text(max_size=10),
        secret=st.booleans(),
    ),
    max_size=5,
)
IDENT = TaskIdentity("ns", "task", "6f1c2a3b-0000-4000-8000-000000000001", 2)
DIRS = TaskDirs.for_task(Path("/var/lib/rkt-operator/tasks"), IDENT)


@FUZZ
@given(specs, node_settings, resolved)
def test_valid_specs_translate_or_raise_spec_error(
    body: dict[str, Any], node: Settings, env: list[ResolvedVar]
) -> None:
    try:
        spec = RktTaskSpec.model_validate(body)
    except ValidationError:
        return
    try:
        plan = build_launch_plan(spec, settings=node, identity=IDENT, dirs=DIRS, env=env)
    except SpecError:
        return  # a refusal of this node (volumes) or of rkt (a resolved value): fine
    prepare = list(plan.prepare)
    assert prepare[prepare.index("prepare") - 1].startswith("--debug=")
    assert prepare.count(spec.image) >= 1
    image_at = prepare.index(spec.image)
    assert all(not item.startswith("--set-env") for item in prepare[image_at + 1 :])
    assert "run-prepared" in plan.run_prepared
    for item in (*plan.prepare, *plan.run_prepared, *(plan.trust or ())):
        assert isinstance(item, str)
        assert "\x00" not in item
    secret_names = {name for name, _ in plan.secret_env}
    assert not [
        i for i in prepare if i.startswith("--set-env=") and i[10:].split("=")[0] in secret_names
    ]
    # The plan carries the desired grace; the one rule (applied by Executor.stop) bounds it.
    assert plan.kill_timeout_seconds == spec.kill_timeout_seconds
    grace = kill_timeout(plan.kill_timeout_seconds, node.max_kill_timeout_seconds)
    assert 0 < grace <= max(node.max_kill_timeout_seconds, 10.0)


@FUZZ
@given(specs)
def test_model_dump_round_trips(body: dict[str, Any]) -> None:
    try:
        spec = RktTaskSpec.model_validate(body)
    except ValidationError:
        return
    assert RktTaskSpec.model_validate(spec.model_dump(exclude_none=True)) == spec
