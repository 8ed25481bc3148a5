"""``spec.logs``: validation as the CRD does it, translation into the launch plan, and a
change of logs alone being a live update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rkt_operator.model.crd import openapi_schema
from rkt_operator.model.logs import LogConfig
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.reconcile import taskstate
from rkt_operator.rkt.argv import build_launch_plan
from rkt_operator.rkt.types import TaskDirs, TaskIdentity
from rkt_operator.settings import Settings

BASE: dict[str, Any] = {"nodeName": "n1", "image": "example.com/app:1.0"}
UID = "0f0e0d0c-0b0a-4000-8000-0000000000aa"
IDENT = TaskIdentity(namespace="default", name="app", uid=UID, generation=1)


def plan(spec: dict[str, Any]) -> tuple[int, int]:
    built = build_launch_plan(
        RktTaskSpec.model_validate(spec),
        settings=Settings(),
        identity=IDENT,
        dirs=TaskDirs.for_task(Path("/tasks"), IDENT),
        env=[],
    )
    return built.log_max_files, built.log_max_file_bytes


def test_defaults_are_nomads() -> None:
    assert RktTaskSpec.model_validate(BASE).logs is None
    assert plan(BASE) == (10, 10 * 1024 * 1024)
    assert plan({**BASE, "logs": {}}) == (10, 10 * 1024 * 1024)


def test_values_reach_the_plan_in_bytes() -> None:
    assert plan({**BASE, "logs": {"maxFiles": 3, "maxFileSizeMB": 2}}) == (3, 2 * 1024 * 1024)
    spec = RktTaskSpec.model_validate({**BASE, "logs": {"maxFiles": 1, "maxFileSizeMB": 1024}})
    assert spec.logs == LogConfig(max_files=1, max_file_size_mb=1024)
    assert spec.model_dump(exclude_none=True)["logs"] == {"maxFiles": 1, "maxFileSizeMB": 1024}


@pytest.mark.parametrize(
    "logs",
    [
        {"maxFiles": 0},
        {"maxFiles": 101},
        {"maxFileSizeMB": 0},
        {"maxFileSizeMB": 1025},
        {"maxFiles": "3"},
        {"maxFileSizeMb": 3},  # the field is maxFileSizeMB
        {"maxFiles": 2.5},
    ],
)
def test_out_of_range_or_mistyped_values_are_refused(logs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RktTaskSpec.model_validate({**BASE, "logs": logs})


def test_crd_schema_bounds_match() -> None:
    logs = openapi_schema(RktTaskSpec)["properties"]["logs"]
    assert logs["type"] == "object"
    assert logs["properties"]["maxFiles"] == {
        "description": logs["properties"]["maxFiles"]["description"],
        "type": "integer",
        "default": 10,
        "maximum": 100,
        "minimum": 1,
    }
    size = logs["properties"]["maxFileSizeMB"]
    assert (size["minimum"], size["maximum"], size["default"]) == (1, 1024, 10)


@pytest.mark.parametrize(
    ("old", "new", "live"),
    [
        ({**BASE}, {**BASE, "logs": {"maxFiles": 3}}, True),
        ({**BASE, "logs": {"maxFiles": 3}}, {**BASE, "logs": {"maxFiles": 4}}, True),
        ({**BASE, "logs": {"maxFiles": 3}}, {**BASE}, True),
        (
            {**BASE, "logs": {"maxFiles": 3}, "killTimeoutSeconds": 1},
            {**BASE, "logs": {"maxFiles": 4}, "killTimeoutSeconds": 2},
            True,
        ),
        (
            {**BASE, "logs": {"maxFiles": 3}},
            {**BASE, "logs": {"maxFiles": 4}, "args": ["x"]},
            False,
        ),
    ],
)
def test_a_change_of_logs_alone_is_live(
    old: dict[str, Any], new: dict[str, Any], live: bool
) -> None:
    assert taskstate.live_only_change(old, new) is live
