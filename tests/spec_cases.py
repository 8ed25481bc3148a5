"""Invalid RktTask specs shared by the model tests (tests/unit/test_spec.py) and the API server
tests (tests/k8s/test_crd_server.py): each must be refused by both, naming the same field.

One row per schema or CEL rule of the CRD. ``server`` is the text the API server's error must
contain (its field path); ``model`` the start of the pydantic error location (dotted aliases).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

BASE_SPEC: dict[str, Any] = {
    "nodeName": "node-a",
    "image": "example.com/kv-server:1.0",
    "ports": [{"name": "client", "hostPort": 2379}],
    "volumes": [{"name": "data", "hostPath": "/srv/data", "mountPath": "/data"}],
    "env": [{"name": "MODE", "value": "prod"}],
}


@dataclass(frozen=True)
class Invalid:
    id: str
    change: Callable[[dict[str, Any]], None]
    server: str  # field path the API server's message names
    model: str  # start of the pydantic error location


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        spec.update(copy.deepcopy(values))

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        del spec[key]

    return change


def _port(**values: Any) -> Callable[[dict[str, Any]], None]:
    return _set(ports=[{"name": "client", **values}])


def _volume(**values: Any) -> Callable[[dict[str, Any]], None]:
    return _set(volumes=[{"name": "data", "hostPath": "/srv/data", "mountPath": "/data", **values}])


def _env(**values: Any) -> Callable[[dict[str, Any]], None]:
    return _set(env=[{"name": "X", **values}])


def _limits(**values: Any) -> Callable[[dict[str, Any]], None]:
    return _set(resources={"limits": values})


def _requires(**expression: Any) -> Callable[[dict[str, Any]], None]:
    term = {"matchExpressions": [expression]}
    required = {"nodeSelectorTerms": [term]}
    return _set(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )


def _toleration(**values: Any) -> Callable[[dict[str, Any]], None]:
    return _set(tolerations=[values])


_EXPR = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
_EXPR_MODEL = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"


def _probe(kind: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    return _set(**{kind: {"exec": {"command": ["/bin/true"]}, **values}})


SECRET = {"secretKeyRef": {"name": "s", "key": "k"}}
INVALID: tuple[Invalid, ...] = (
    Invalid("nodeName-not-dns", _set(nodeName="Node_A"), "spec.nodeName", "nodeName"),
    Invalid("image-missing", _drop("image"), "spec.image", "image"),
    Invalid("image-empty", _set(image=""), "spec.image", "image"),
    Invalid("image-relative-path", _set(image="./app.aci"), "spec.image", "image"),
    Invalid("image-relative-aci", _set(image="app.aci"), "spec.image", "image"),
    Invalid("image-with-space", _set(image="example.com/a b"), "spec.image", "image"),
    Invalid("unknown-field", _set(portMap={"a": "b"}), "portMap", "portMap"),
    Invalid("command-newline", _set(command="/bin/sh\n-c"), "spec.command", "command"),
    Invalid("args-not-strings", _set(args=[["nested"]]), "spec.args[0]", "args.0"),
    Invalid("trustPrefix-empty", _set(trustPrefix=""), "spec.trustPrefix", "trustPrefix"),
    Invalid(
        "insecure-unknown",
        _set(insecureOptions=["everything"]),
        "spec.insecureOptions[0]",
        "insecureOptions.0",
    ),
    Invalid(
        "insecure-duplicate",
        _set(insecureOptions=["image", "image"]),
        "spec.insecureOptions[1]",
        "insecureOptions",
    ),
    Invalid("dns-not-ip", _set(dnsServers=["dns.google"]), "spec.dnsServers[0]", "dnsServers.0"),
    Invalid(
        "dns-host-not-alone",
        _set(dnsServers=["host", "8.8.8.8"]),
        "spec.dnsServers",
        "dnsServers",
    ),
    Invalid(
        "dns-search-with-none",
        _set(dnsServers=["none"], dnsSearchDomains=["example.com"]),
        "spec.dnsSearchDomains",
        "",
    ),
    Invalid(
        "dns-search-bad",
        _set(dnsSearchDomains=["a b"]),
        "spec.dnsSearchDomains[0]",
        "dnsSearchDomains.0",
    ),
    Invalid("net-host-not-alone", _set(net=["host", "default"]), "spec.net", "net"),
    Invalid("net-twice", _set(net=["default", "default:IP=10.1.0.5"]), "spec.net", "net"),
    Invalid("net-host-args", _set(net=["host:x=y"]), "spec.net[0]", "net"),
    Invalid("net-comma", _set(net=["a,b"]), "spec.net[0]", "net.0"),
    Invalid("port-name-upper", _port(name="Client"), "spec.ports[0].name", "ports.0.name"),
    Invalid(
        "port-host-too-big", _port(hostPort=70000), "spec.ports[0].hostPort", "ports.0.hostPort"
    ),
    Invalid(
        "port-protocol",
        _port(hostPort=1, protocol="SCTP"),
        "spec.ports[0].protocol",
        "ports.0.protocol",
    ),
    Invalid(
        "port-hostIP-without-port", _port(hostIP="127.0.0.1"), "spec.ports[0].hostIP", "ports.0"
    ),
    Invalid(
        "port-hostIP-v6", _port(hostPort=80, hostIP="::1"), "spec.ports[0].hostIP", "ports.0.hostIP"
    ),
    Invalid(
        "port-names-unique", _set(ports=[{"name": "a"}, {"name": "a"}]), "spec.ports[1]", "ports"
    ),
    Invalid(
        "port-bindings-unique",
        _set(ports=[{"name": "a", "hostPort": 80}, {"name": "b", "hostPort": 80}]),
        "spec.ports",
        "ports",
    ),
    Invalid(
        "port-with-net-none",
        _set(net=["none"]),
        "spec.ports",
        "",
    ),
    Invalid("volume-name", _volume(name="Data"), "spec.volumes[0].name", "volumes.0.name"),
    Invalid(
        "volume-relative-host",
        _volume(hostPath="srv/data"),
        "spec.volumes[0].hostPath",
        "volumes.0.hostPath",
    ),
    Invalid(
        "volume-dotdot",
        _volume(hostPath="/srv/../etc"),
        "spec.volumes[0].hostPath",
        "volumes.0.hostPath",
    ),
    Invalid(
        "volume-comma",
        _volume(mountPath="/a,b"),
        "spec.volumes[0].mountPath",
        "volumes.0.mountPath",
    ),
    Invalid(
        "volume-reserved",
        _volume(mountPath="/secrets"),
        "spec.volumes[0].mountPath",
        "volumes.0.mountPath",
    ),
    Invalid(
        "volume-names-unique",
        _set(
            volumes=[
                {"name": "a", "hostPath": "/a", "mountPath": "/a"},
                {"name": "a", "hostPath": "/b", "mountPath": "/b"},
            ]
        ),
        "spec.volumes[1]",
        "volumes",
    ),
    Invalid(
        "volume-mounts-unique",
        _set(
            volumes=[
                {"name": "a", "hostPath": "/a", "mountPath": "/m"},
                {"name": "b", "hostPath": "/b", "mountPath": "/m"},
            ]
        ),
        "spec.volumes",
        "volumes",
    ),
    Invalid("env-name-dash", _env(name="LOG-LEVEL", value="x"), "spec.env[0].name", "env.0.name"),
    Invalid("env-name-digit", _env(name="1X", value="x"), "spec.env[0].name", "env.0.name"),
    Invalid("env-names-unique", _set(env=[{"name": "A"}, {"name": "A"}]), "spec.env[1]", "env"),
    Invalid("env-value-and-from", _env(value="x", valueFrom=SECRET), "spec.env[0]", "env.0"),
    Invalid("env-from-empty", _env(valueFrom={}), "spec.env[0].valueFrom", "env.0.valueFrom"),
    Invalid(
        "env-from-two",
        _env(valueFrom={**SECRET, "fieldRef": {"fieldPath": "metadata.name"}}),
        "spec.env[0].valueFrom",
        "env.0.valueFrom",
    ),
    Invalid(
        "env-fieldRef-path",
        _env(valueFrom={"fieldRef": {"fieldPath": "status.ip"}}),
        "spec.env[0].valueFrom.fieldRef.fieldPath",
        "env.0.valueFrom.fieldRef.fieldPath",
    ),
    Invalid(
        "env-secret-no-key",
        _env(valueFrom={"secretKeyRef": {"name": "s"}}),
        "spec.env[0].valueFrom.secretKeyRef.key",
        "env.0.valueFrom.secretKeyRef.key",
    ),
    Invalid(
        "memory-zero",
        _limits(memory="0"),
        "spec.resources.limits.memory",
        "resources.limits.memory",
    ),
    Invalid(
        "memory-negative",
        _limits(memory="-1Gi"),
        "spec.resources.limits.memory",
        "resources.limits.memory",
    ),
    Invalid(
        "memory-too-big",
        _limits(memory="2Ei"),
        "spec.resources.limits.memory",
        "resources.limits.memory",
    ),
    Invalid(
        "cpu-not-quantity", _limits(cpu="lots"), "spec.resources.limits.cpu", "resources.limits.cpu"
    ),
    Invalid("cpu-float", _limits(cpu=0.5), "spec.resources.limits.cpu", "resources.limits.cpu"),
    Invalid("limits-unknown", _limits(gpu=1), "gpu", "resources.limits.gpu"),
    Invalid(
        "requests-above-limit",
        _set(resources={"limits": {"memory": "64Mi"}, "requests": {"memory": "128Mi"}}),
        "spec.resources.requests.memory",
        "resources",
    ),
    Invalid(
        "requests-above-default-limit",
        _set(resources={"requests": {"cpu": "1"}}),
        "spec.resources.requests.cpu",
        "resources",
    ),
    Invalid(
        "requests-zero",
        _set(resources={"requests": {"cpu": "0"}}),
        "spec.resources.requests.cpu",
        "resources.requests.cpu",
    ),
    Invalid(
        "nodeSelector-bad-key",
        _set(nodeSelector={"bad key": "x"}),
        "spec.nodeSelector",
        "nodeSelector",
    ),
    Invalid(
        "nodeSelector-bad-value",
        _set(nodeSelector={"zone": "a b"}),
        "spec.nodeSelector",
        "nodeSelector",
    ),
    Invalid(
        "affinity-unknown-operator",
        _requires(key="zone", operator="Matches", values=["a"]),
        f"{_EXPR}.nodeSelectorTerms[0].matchExpressions[0].operator",
        f"{_EXPR_MODEL}.nodeSelectorTerms.0.matchExpressions.0.operator",
    ),
    Invalid(
        "affinity-in-without-values",
        _requires(key="zone", operator="In"),
        "operator In and NotIn need at least one value",
        f"{_EXPR_MODEL}.nodeSelectorTerms.0.matchExpressions.0",
    ),
    Invalid(
        "affinity-exists-with-values",
        _requires(key="zone", operator="Exists", values=["a"]),
        "operator Exists and DoesNotExist take no values",
        f"{_EXPR_MODEL}.nodeSelectorTerms.0.matchExpressions.0",
    ),
    Invalid(
        "affinity-gt-not-integer",
        _requires(key="cores", operator="Gt", values=["many"]),
        "operator Gt and Lt need exactly one value, an integer",
        f"{_EXPR_MODEL}.nodeSelectorTerms.0.matchExpressions.0",
    ),
    Invalid(
        "affinity-no-terms",
        _set(
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                }
            }
        ),
        f"{_EXPR}.nodeSelectorTerms",
        f"{_EXPR_MODEL}.nodeSelectorTerms",
    ),
    Invalid(
        "affinity-weight-zero",
        _set(
            affinity={
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 0, "preference": {"matchExpressions": []}}
                    ]
                }
            }
        ),
        "weight",
        "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.weight",
    ),
    Invalid(
        "toleration-exists-with-value",
        _toleration(key="k", operator="Exists", value="v"),
        "spec.tolerations[].value must be empty when operator is Exists",
        "tolerations.0",
    ),
    Invalid(
        "toleration-empty-key-equal",
        _toleration(value="v"),
        "an empty key needs operator Exists",
        "tolerations.0",
    ),
    Invalid(
        "toleration-seconds-without-noexecute",
        _toleration(key="k", operator="Exists", effect="NoSchedule", tolerationSeconds=5),
        "tolerationSeconds needs effect NoExecute",
        "tolerations.0",
    ),
    Invalid(
        "toleration-bad-effect",
        _toleration(key="k", operator="Exists", effect="Sometimes"),
        "spec.tolerations[0].effect",
        "tolerations.0.effect",
    ),
    Invalid("user-space", _set(user="no body"), "spec.user", "user"),
    Invalid("group-empty", _set(group=""), "spec.group", "group"),
    Invalid("noOverlay-not-bool", _set(noOverlay="yes"), "spec.noOverlay", "noOverlay"),
    Invalid(
        "kill-timeout-negative",
        _set(killTimeoutSeconds=-1),
        "spec.killTimeoutSeconds",
        "killTimeoutSeconds",
    ),
    Invalid(
        "restartPolicy", _set(restartPolicy="Sometimes"), "spec.restartPolicy", "restartPolicy"
    ),
    Invalid(
        "probe-without-exec",
        _set(readinessProbe={"periodSeconds": 5}),
        "spec.readinessProbe.exec",
        "readinessProbe.exec",
    ),
    Invalid(
        "probe-http-get",
        _probe("readinessProbe", httpGet={"port": 80}),
        "httpGet",
        "readinessProbe.httpGet",
    ),
    Invalid(
        "probe-command-empty",
        _set(readinessProbe={"exec": {"command": []}}),
        "spec.readinessProbe.exec.command",
        "readinessProbe.exec.command",
    ),
    Invalid(
        "probe-executable-empty",
        _set(livenessProbe={"exec": {"command": ["", "x"]}}),
        "spec.livenessProbe.exec.command",
        "livenessProbe.exec.command",
    ),
    Invalid(
        "probe-period-zero",
        _probe("readinessProbe", periodSeconds=0),
        "spec.readinessProbe.periodSeconds",
        "readinessProbe.periodSeconds",
    ),
    Invalid(
        "probe-timeout-zero",
        _probe("livenessProbe", timeoutSeconds=0),
        "spec.livenessProbe.timeoutSeconds",
        "livenessProbe.timeoutSeconds",
    ),
    Invalid(
        "probe-delay-negative",
        _probe("readinessProbe", initialDelaySeconds=-1),
        "spec.readinessProbe.initialDelaySeconds",
        "readinessProbe.initialDelaySeconds",
    ),
    Invalid(
        "probe-failure-threshold-zero",
        _probe("readinessProbe", failureThreshold=0),
        "spec.readinessProbe.failureThreshold",
        "readinessProbe.failureThreshold",
    ),
    Invalid(
        "liveness-success-threshold",
        _probe("livenessProbe", successThreshold=2),
        "spec.livenessProbe.successThreshold",
        "livenessProbe",
    ),
)


def invalid_spec(case: Invalid) -> dict[str, Any]:
    """``BASE_SPEC`` with the case's change applied."""
    spec = copy.deepcopy(BASE_SPEC)
    case.change(spec)
    return spec


def manifest(spec: dict[str, Any], name: str = "case") -> dict[str, Any]:
    return {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {"name": name},
        "spec": spec,
    }


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def example_tasks(path: Path) -> list[dict[str, Any]]:
    """The RktTask documents of one example file (others, like a Secret, are skipped)."""
    with path.open() as stream:
        documents = [d for d in yaml.safe_load_all(stream) if d]
    return [d for d in documents if d.get("kind") == "RktTask"]
