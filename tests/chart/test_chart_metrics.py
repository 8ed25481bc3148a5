"""The chart and the agent's metrics endpoint: the container declares the metrics port, the
pod carries Prometheus scrape annotations (optional, overridable), and a malformed endpoint
is refused at template time."""

from __future__ import annotations

from typing import Any

import pytest
from chartlib import CHART, Helm, Render, find


def _template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = find(objects, "DaemonSet")["spec"]["template"]
    return template


def _ports(objects: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    (container,) = _template(objects)["spec"]["containers"]
    ports: list[dict[str, Any]] | None = container.get("ports")
    return ports


def _annotations(objects: list[dict[str, Any]]) -> dict[str, str]:
    return dict(_template(objects)["metadata"].get("annotations") or {})


def test_metrics_port_and_scrape_annotations_by_default(render: Render) -> None:
    objects = render()
    assert _ports(objects) == [{"name": "metrics", "containerPort": 8081, "protocol": "TCP"}]
    assert _annotations(objects) == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8081",
        "prometheus.io/path": "/metrics",
    }


def test_port_and_annotations_follow_the_endpoint(render: Render) -> None:
    objects = render("--set=agent.metricsEndpoint=http://0.0.0.0:9464/stats")
    assert _ports(objects) == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    annotations = _annotations(objects)
    assert annotations["prometheus.io/port"] == "9464"
    assert annotations["prometheus.io/path"] == "/stats"
    # No path: the agent serves /, and the annotation says so.
    assert (
        _annotations(render("--set=agent.metricsEndpoint=http://0.0.0.0:9464"))[
            "prometheus.io/path"
        ]
        == "/"
    )


def test_disabled_endpoint_has_no_port_and_no_annotations(render: Render) -> None:
    objects = render("--set=agent.metricsEndpoint=", '--set-json=podAnnotations={"a":"b"}')
    assert _ports(objects) is None
    assert _annotations(objects) == {"a": "b"}


def test_annotations_can_be_turned_off_or_overridden(render: Render) -> None:
    assert _annotations(render("--set=metrics.scrapeAnnotations=false")) == {}
    objects = render('--set-json=podAnnotations={"prometheus.io/scrape":"false","x":"y"}')
    annotations = _annotations(objects)
    assert annotations["prometheus.io/scrape"] == "false"
    assert annotations["x"] == "y"
    assert annotations["prometheus.io/port"] == "8081"
    assert _ports(render("--set=metrics.scrapeAnnotations=false")) is not None


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "agent.metricsEndpoint=0.0.0.0:8081"], "/agent/metricsEndpoint"),
        (["--set", "agent.metricsEndpoint=http://0.0.0.0/metrics"], "/agent/metricsEndpoint"),
        (["--set", "metrics.scrapeAnnotations=maybe"], "/metrics/scrapeAnnotations"),
        (["--set", "metrics.scrape=true"], "scrape"),
    ],
)
def test_schema_rejects_bad_metrics_values(helm: Helm, args: list[str], complaint: str) -> None:
    done = helm("template", "t", str(CHART), *args, check=False)
    assert done.returncode != 0
    assert "don't meet the specifications of the schema" in done.stderr
    assert complaint in done.stderr
