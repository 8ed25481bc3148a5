"""Nomad constraints and affinities -> nodeName, nodeSelector and nodeAffinity (the
``placement`` rules), and what a converted task without --node looks like."""

from __future__ import annotations

from convertlib import CORPUS, convert

from rkt_operator.convert.nomad import Rule
from rkt_operator.convert.placement import place
from rkt_operator.model.spec import RktTaskSpec


def test_attributes_and_operators_map_to_node_labels() -> None:
    placed = place(
        [
            Rule("${attr.kernel.name}", "=", "linux"),
            Rule("${attr.cpu.arch}", "!=", "arm64"),
            Rule("${driver.rkt.volumes.enabled}", "==", "1"),
            Rule("${meta.rack}", "is_set", ""),
            Rule("${meta.cores}", ">=", "8"),
            Rule("${node.unique.name}", "!=", "node-c"),
        ],
        [Rule("${meta.ssd}", "=", "yes", 80), Rule("${attr.cpu.arch}", "=", "amd64", -30)],
        node=None,
    )
    assert placed.node is None
    assert placed.unconverted == []
    assert placed.spec_fields() == {
        "nodeSelector": {"kubernetes.io/os": "linux", "rktoperator.io/volumes.enabled": "true"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/arch",
                                    "operator": "NotIn",
                                    "values": ["arm64"],
                                },
                                {"key": "rack", "operator": "Exists"},
                                {"key": "cores", "operator": "Gt", "values": ["7"]},
                            ],
                            "matchFields": [
                                {
                                    "key": "metadata.name",
                                    "operator": "NotIn",
                                    "values": ["node-c"],
                                },
                            ],
                        }
                    ]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 80,
                        "preference": {
                            "matchExpressions": [
                                {"key": "ssd", "operator": "In", "values": ["yes"]}
                            ]
                        },
                    },
                    {
                        "weight": 30,
                        "preference": {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/arch",
                                    "operator": "NotIn",
                                    "values": ["amd64"],
                                }
                            ]
                        },
                    },
                ],
            }
        },
    }
    # The agent's own model accepts what came out.
    RktTaskSpec.model_validate({"image": "example.com/a:1", **placed.spec_fields()})


def test_rules_without_an_equivalent_are_listed_with_the_reason() -> None:
    placed = place(
        [
            Rule("${driver.rkt.version}", "version", ">= 1.27"),
            Rule("${attr.kernel.version}", "=", "5.10"),
            Rule("${meta.tier}", "regexp", "^web"),
        ],
        [],
        node="node-a",
    )
    assert placed.node == "node-a"
    assert [(r.attribute, why) for _, r, why in placed.unconverted] == [
        ("${driver.rkt.version}", "operator 'version' has no node-affinity equivalent"),
        ("${attr.kernel.version}", "no node label has this meaning"),
        ("${meta.tier}", "operator 'regexp' has no node-affinity equivalent"),
    ]


def test_a_pin_on_the_node_name_wins_and_rkt_itself_is_implied() -> None:
    placed = place(
        [Rule("${node.unique.name}", "=", "node-b"), Rule("${driver.rkt}", "=", "1")],
        [],
        node="node-a",
    )
    assert placed.node == "node-b"
    assert placed.spec_fields() == {}
    assert [r.attribute for _, r in placed.implied] == ["${driver.rkt}"]


def test_without_node_the_binder_places_the_task_by_its_selector() -> None:
    run = convert(str(CORPUS / "hcl2-count-constraints.hcl"))
    specs = {d["metadata"]["name"]: d["spec"] for d in run.documents}
    memcached = specs["cache-memcache-memcached-0"]
    assert "nodeName" not in memcached
    assert memcached["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert specs["cache-pinned-warmer"]["nodeName"] == "node-b"  # pinned by its constraint
    assert "the binder (rkt-operator schedule) binds the task" in run.stderr


def test_with_node_the_rules_are_noted_as_not_checked() -> None:
    run = convert("--node=node-a", str(CORPUS / "hcl2-count-constraints.hcl"))
    first = run.documents[0]["spec"]
    assert first["nodeName"] == "node-a"
    assert "nodeSelector" not in first
    assert "bound to the node given: its constraints and affinities are not checked" in (run.stderr)
