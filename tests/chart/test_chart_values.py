"""values.yaml's ``agent:`` section is the agent's Settings, one to one, and the chart hands
every value to the agent intact: keys, defaults, schema constraints and the rendered
environment all agree with ``rkt_operator.settings``."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from annotated_types import Ge, Gt
from chartlib import CHART, Render, find

from rkt_operator import settings as agent_settings
from rkt_operator.settings import Settings

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
AGENT_SCHEMA = SCHEMA["properties"]["agent"]["properties"]


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


FIELDS = {camel(name): name for name in Settings.model_fields}


def test_every_settings_field_has_a_value_key() -> None:
    assert sorted(set(FIELDS) - set(VALUES["agent"])) == []


def test_every_value_key_is_a_settings_field() -> None:
    assert sorted(set(VALUES["agent"]) - set(FIELDS)) == []


def test_schema_describes_exactly_the_agent_keys() -> None:
    assert set(AGENT_SCHEMA) == set(FIELDS)
    assert SCHEMA["properties"]["agent"]["additionalProperties"] is False


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_default_equals_the_agents_default(key: str) -> None:
    default = Settings.model_fields[FIELDS[key]].default
    assert VALUES["agent"][key] == _plain(default)


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_schema_constraints_follow_the_settings_field(key: str) -> None:
    field = Settings.model_fields[FIELDS[key]]
    prop = AGENT_SCHEMA[key]
    if typing.get_origin(field.annotation) is typing.Literal:
        assert prop["enum"] == list(typing.get_args(field.annotation))
    for bound in field.metadata:
        if isinstance(bound, Ge):
            assert prop["minimum"] == bound.ge
        if isinstance(bound, Gt):
            assert prop["exclusiveMinimum"] == bound.gt
    expected_type = {bool: "boolean", float: "number", str: "string", Path: "string"}
    if field.annotation in expected_type:
        assert prop["type"] == expected_type[field.annotation]
    elif typing.get_origin(field.annotation) is tuple:
        assert prop["type"] == "array"


def test_values_yaml_passes_its_own_schema() -> None:
    jsonschema.validate(VALUES, SCHEMA)


def _agent_env(render: Render, *args: str) -> dict[str, str]:
    daemonset = find(render(*args), "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_rendered_environment_loads_as_the_default_settings(render: Render) -> None:
    env = _agent_env(render)
    assert all(name.startswith(agent_settings.ENV_PREFIX) for name in env)
    loaded = agent_settings.load(environ={**env, "NODE_NAME": "node-x"})
    assert loaded == Settings(node_name="node-x")


def test_every_field_but_the_node_name_is_rendered(render: Render) -> None:
    env = _agent_env(render)
    expected = {agent_settings.ENV_PREFIX + n.upper() for n in Settings.model_fields}
    assert set(env) == expected - {agent_settings.ENV_PREFIX + "NODE_NAME"}


def test_non_default_values_reach_the_agent_intact(render: Render) -> None:
    overrides = {
        "namespaces": ["team-a", "team-b"],
        "rktPath": "/opt/rkt/rkt",
        "rktDir": "/data/rkt",
        "volumesEnabled": False,
        "volumesAllowedHostPaths": ["/srv", "/data/shared"],
        "maxKillTimeoutSeconds": 92.5,
        "launcher": "detached",
        "resyncIntervalSeconds": 0.25,
        "selector": "label",
        "livenessEndpoint": "",
        "metricsEndpoint": "http://127.0.0.1:9464/stats",
        "logFormat": "text",
        "logLevel": "DEBUG",
        "envBlacklist": [],
        "publishFingerprint": False,
    }
    args = [f"--set-json=agent.{k}={json.dumps(v)}" for k, v in overrides.items()]
    loaded = agent_settings.load(environ={**_agent_env(render, *args), "NODE_NAME": "n1"})
    expected = Settings.model_validate(
        {"node_name": "n1", **{FIELDS[k]: v for k, v in overrides.items()}}
    )
    assert loaded == expected
