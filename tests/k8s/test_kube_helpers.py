"""The small kubectl-side helpers in rkt_devkit.kube."""

from __future__ import annotations

import re
from itertools import count

import pytest

from fixtures_k8s import Kubectl
from rkt_devkit.kube import WaitTimeout, get_json, unique_name, wait_for

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "hint", ["test_foo[param-1]", "A" * 100, "---", "ümlaut/Ünder_score", "t-" + "x" * 70 + "-"]
)
def test_unique_name_is_a_dns_label(hint: str) -> None:
    names = {unique_name(hint) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert len(name) <= 63
        assert DNS_LABEL.match(name), name


def test_unique_name_keeps_the_hint_readable() -> None:
    assert unique_name("Test_Some Thing", max_length=30).startswith("test-some-thing-")


def test_wait_for_returns_the_first_truthy_value() -> None:
    calls = count(1)
    assert wait_for(lambda: (n := next(calls)) >= 3 and f"call {n}", interval=0.01) == "call 3"


def test_wait_for_gives_up_naming_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeout, match=r"the moon.*last: \[\]"):
        wait_for(lambda: [], timeout=0.05, interval=0.01, what="the moon")


def test_get_json_reads_an_object_or_none(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "present", "--from-literal=k=v", "-n", namespace)
    found = get_json(kubectl, "configmap", "present", namespace)
    assert found is not None
    assert found["data"] == {"k": "v"}
    assert get_json(kubectl, "configmap", "absent", namespace) is None
    assert get_json(kubectl, "namespace", namespace) is not None  # cluster-scoped: no namespace
