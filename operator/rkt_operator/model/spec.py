"""The ``RktTask.spec`` API: pydantic models with camelCase aliases, one per object of the
spec, each field described (the descriptions become the CRD's, so ``kubectl explain``
helps) and validated exactly as the CRD's schema and CEL rules validate it.

Parse an object's spec with ``RktTaskSpec.model_validate(body["spec"])``. What needs the
node's settings (volumes allowed at all, host-path allowlist, kill-timeout cap) is checked
at translation time by ``rkt_operator.rkt.argv``, not here.

Size: the whole RktTask spec, field by field with the descriptions the CRD is generated
from; the nested types live in the sibling modules (env, network, probes, volumes, ...).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rkt_operator.model import fields as f
from rkt_operator.model.env import (
    ConfigMapKeySelector,
    EnvVar,
    EnvVarSource,
    ObjectFieldSelector,
    SecretKeySelector,
)
from rkt_operator.model.fields import KubeModel as _Model
from rkt_operator.model.logs import LogConfig
from rkt_operator.model.network import (
    DNS_SPECIAL,
    NET_SPECIAL,
    DnsServer,
    Domain,
    Network,
    PortSpec,
)
from rkt_operator.model.placement import (
    LABEL_KEY,
    MAX_SELECTOR,
    MAX_TOLERATIONS,
    Affinity,
    LabelValue,
    NodeAffinity,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PreferredSchedulingTerm,
    Toleration,
)
from rkt_operator.model.probes import ExecAction, LivenessProbe, Probe
from rkt_operator.model.resources import (
    DEFAULT_CPU,
    DEFAULT_MEMORY,
    ResourceLimits,
    ResourceRequests,
    Resources,
)
from rkt_operator.model.volumes import VolumeSpec

__all__ = [
    "DEFAULT_CPU",
    "DEFAULT_MEMORY",
    "INSECURE_OPTIONS",
    "NOMAD_OPTION_MAP",
    "Affinity",
    "ConfigMapKeySelector",
    "EnvVar",
    "EnvVarSource",
    "ExecAction",
    "LivenessProbe",
    "LogConfig",
    "NodeAffinity",
    "NodeSelector",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "ObjectFieldSelector",
    "PortSpec",
    "PreferredSchedulingTerm",
    "Probe",
    "ResourceLimits",
    "ResourceRequests",
    "Resources",
    "RktTaskSpec",
    "SecretKeySelector",
    "Toleration",
    "VolumeSpec",
    "validation_problems",
]

# Each RktTask field and the Nomad rkt-driver option it replaces (README table source).
NOMAD_OPTION_MAP: tuple[tuple[str, str, str], ...] = (
    ("nodeName", "(the node Nomad's scheduler chose)", "which node's agent runs the task"),
    ("nodeSelector", "constraint `${node.class}` / `${meta.x}` = value", "(placement only)"),
    ("affinity", "constraint operators, affinity stanza", "(placement only)"),
    ("tolerations", "(node drain / ineligibility)", "(placement only)"),
    ("resources.requests", "resources memory / cpu (scheduling)", "(placement only)"),
    ("image", "image", "positional IMAGE of `rkt prepare`"),
    ("command", "command", "`--exec=<command>`"),
    ("args", "args (Nomad `${VAR}` interpolation)", "`-- <args>`, after `$(VAR)` expansion"),
    ("env", "task `env` stanza / TaskEnv", "`--set-env=K=V` (secrets: `--set-env-file`)"),
    ("trustPrefix", "trust_prefix", "`rkt trust --prefix=<p>` before prepare"),
    ("insecureOptions", "insecure_options", "global `--insecure-options=<a,b>`"),
    ("dnsServers", "dns_servers", "`--dns=<ip>`... or `--dns=host|none` (run-prepared)"),
    ("dnsSearchDomains", "dns_search_domains", "`--dns-search=<d>` (run-prepared)"),
    ("net", "net", "`--net=<a,b>` (run-prepared)"),
    ("ports", "port_map + resources.network ports", "`--port=<name>:[<ip>:]<hostPort>`"),
    ("volumes", "volumes (`host:container[:readOnly]`)", "`--volume=...,readOnly=` + `--mount`"),
    ("resources.limits.memory", "resources.memory (MB)", "`--memory=<n>M`"),
    ("resources.limits.cpu", "resources.cpu (MHz)", "`--cpu=<n>m` (millicores)"),
    ("user", "task `user`", "`--user=<user>`"),
    ("group", "group", "`--group=<group>`"),
    ("noOverlay", "no_overlay", "`--no-overlay=true`"),
    ("debug", "debug", "global `--debug=true|false` (always emitted)"),
    ("killTimeoutSeconds", "task kill_timeout (capped by max_kill_timeout)", "stop grace"),
    ("restartPolicy", "group restart stanza", "agent restarts exited pods"),
    ("progressDeadlineSeconds", "(none: a failed start was final)", "Stalled after failed starts"),
    ("readinessProbe", "service check (type script)", "`rkt enter <uuid> <cmd>` -> Ready"),
    ("livenessProbe", "check_restart on a script check", "`rkt enter`; failing -> stop, restart"),
    ("logs", "task logs stanza (max_files, max_file_size)", "rotated files in `alloc/logs/`"),
)

# rkt's complete list of --insecure-options values (rkt-cli.md §1.3).
InsecureOption = Literal[
    "none", "image", "tls", "ondisk", "http", "pubkey",
    "capabilities", "paths", "seccomp", "all-fetch", "all-run", "all",
]  # fmt: skip
INSECURE_OPTIONS: tuple[str, ...] = get_args(InsecureOption)
RestartPolicy = Literal["Always", "OnFailure", "Never"]

_Arg = Annotated[str, f.Text(f.NO_NUL, "a string without NUL characters", 32768, min_length=0)]
_Token = Annotated[str, f.Text(f.TOKEN, "a single word without spaces", 256)]


def _image_present(value: object) -> object:
    if value == "":
        raise ValueError('field "image" is required, but no value was found')  # Nomad's E2
    return value


def _not_relative_aci(value: str) -> str:
    # rkt reads a scheme-less name ending in .aci as a path relative to its working directory.
    if ":" not in value and not value.startswith("/") and value.endswith(".aci"):
        raise ValueError(
            f"{value!r} is a relative .aci path, which would depend on the agent's working "
            "directory; use an absolute path or a file:// URL"
        )
    return value


def _duplicates(values: list[str]) -> list[str]:
    return sorted(value for value, count in Counter(values).items() if count > 1)


class RktTaskSpec(_Model):
    """Desired state of an RktTask: one rkt pod running one app on the node spec.nodeName.

    Successor of a Nomad task with driver "rkt": each field replaces one option of that
    driver and is translated into the same rkt command-line flags.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                f.cel(
                    "!has(self.dnsSearchDomains) || size(self.dnsSearchDomains) == 0"
                    " || !has(self.dnsServers)"
                    " || !self.dnsServers.exists(x, x == 'host' || x == 'none')",
                    "spec.dnsSearchDomains cannot be combined with spec.dnsServers host or none",
                    field_path=".dnsSearchDomains",
                ),
                f.cel(
                    "!has(oldSelf.nodeName) || has(self.nodeName)",
                    "spec.nodeName cannot be removed once set: delete the task and create it "
                    "again to move it",
                    field_path=".nodeName",
                ),
                f.cel(
                    "!has(self.ports) || !has(self.net) || self.net != ['none']"
                    " || !self.ports.exists(p, has(p.hostPort))",
                    "spec.ports[].hostPort cannot be used with spec.net [none]: the pod only "
                    "has a loopback interface",
                    field_path=".ports",
                ),
            ]
        }
    )

    node_name: Annotated[
        str | None,
        f.Text(
            f.DNS1123_SUBDOMAIN,
            "a valid node name (RFC 1123 subdomain)",
            253,
            rules=(
                f.cel(
                    "self == oldSelf",
                    "spec.nodeName is immutable: delete the task and create it again to move it",
                ),
            ),
        ),
    ] = Field(
        None,
        description="The node whose rkt-operator agent runs this task. Immutable once set. "
        "Leave it out to let the binder (rkt-operator schedule) choose a node that matches "
        "nodeSelector, affinity and tolerations and has room for the task's requests.",
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        description="Labels the node must have, with these values (as a Pod's nodeSelector). "
        "Read by the binder only when nodeName is not set.",
        json_schema_extra={
            "maxProperties": MAX_SELECTOR,
            "x-kubernetes-validations": [
                f.cel(
                    f"self.all(k, size(k) <= 316 && k.matches(r'{LABEL_KEY}'))",
                    "spec.nodeSelector: every key must be a label key ([prefix/]name)",
                )
            ],
        },
    )
    affinity: Affinity | None = Field(
        None,
        description="Node affinity (required and preferred terms), as a Pod's affinity. Read "
        "by the binder only when nodeName is not set.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_TOLERATIONS,
        description="Taints of nodes this task tolerates (NoSchedule and NoExecute taints "
        "keep other tasks off a node). Read by the binder only when nodeName is not set.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    image: Annotated[
        str,
        f.Text(
            f.IMAGE,
            "an image rkt can fetch: an appc name[:version][,label=value], an absolute path, "
            "or a file://, http(s):// or docker:// reference",
            1024,
            rules=(
                f.cel(
                    "self.contains(':') || self.startsWith('/') || !self.endsWith('.aci')",
                    "spec.image: a relative .aci path would depend on the agent's working "
                    "directory; use an absolute path or a file:// URL",
                ),
            ),
        ),
        AfterValidator(_not_relative_aci),
        BeforeValidator(_image_present),
    ] = Field(
        description="The image to run: appc name[:version][,label=value] (example.com/app:1.0), "
        "absolute .aci path, file:///..., https://.../app.aci or docker://repo[:tag]."
    )
    command: Annotated[str, f.Text(f.LINE, "an executable path on one line", 4096)] | None = Field(
        None,
        description="Executable run instead of the image's own (rkt --exec). One path, "
        "not split on spaces, not expanded.",
    )
    args: list[_Arg] = Field(
        default_factory=list,
        max_length=1024,
        description="Arguments for the command (after rkt's '--'). $(VAR) is replaced by the "
        "value of the task's variable VAR, $$ gives a literal $, unknown references are left "
        "as they are (as in a Pod).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=512,
        description="Environment variables of the app. Names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    trust_prefix: _Token | None = Field(
        None,
        description="Image prefix whose signing keys are trusted before the pod is prepared "
        "(rkt trust --prefix). Without it and without insecureOptions, the image runs with "
        "--insecure-options=all (signature checks off), as under Nomad.",
    )
    insecure_options: list[InsecureOption] = Field(
        default_factory=list,
        max_length=len(INSECURE_OPTIONS),
        description="rkt security checks to disable (global --insecure-options): "
        + ", ".join(INSECURE_OPTIONS)
        + ". When set, replaces the 'all' default that applies without trustPrefix.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    dns_servers: list[DnsServer] = Field(
        default_factory=list,
        max_length=16,
        description="DNS servers of the pod (IP addresses), or exactly one of 'host' (the "
        "host's resolv.conf) or 'none' (the image's own).",
        json_schema_extra={
            "x-kubernetes-list-type": "atomic",
            "x-kubernetes-validations": [
                f.cel(
                    "!self.exists(x, x == 'host' || x == 'none') || size(self) == 1",
                    "spec.dnsServers: host and none must be the only entry",
                )
            ],
        },
    )
    dns_search_domains: list[Domain] = Field(
        default_factory=list,
        max_length=32,
        description="DNS search domains of the pod (rkt --dns-search).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    net: list[Network] = Field(
        default_factory=list,
        max_length=16,
        description="Networks to join (rkt --net), e.g. [default] or [mynet:IP=10.1.0.5]. "
        "[host] shares the host's network (ports are not mapped, no IP is reported); [none] "
        "gives a loopback only. Empty: rkt's default network.",
        json_schema_extra={
            "x-kubernetes-list-type": "atomic",
            "x-kubernetes-validations": [
                f.cel(
                    "!self.exists(x, x == 'host' || x == 'none') || size(self) == 1",
                    "spec.net: host and none must be the only network",
                ),
                f.cel(
                    "self.all(x, self.exists_one(y, y.split(':')[0] == x.split(':')[0]))",
                    "spec.net: a network must not be listed twice",
                ),
            ],
        },
    )
    ports: list[PortSpec] = Field(
        default_factory=list,
        max_length=64,
        description="Ports of the image to publish and report (replaces Nomad's port_map).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                f.cel(
                    "self.all(x, !has(x.hostPort) || self.exists_one(y, has(y.hostPort)"
                    " && y.hostPort == x.hostPort"
                    " && (has(y.protocol) ? y.protocol : 'TCP')"
                    " == (has(x.protocol) ? x.protocol : 'TCP')"
                    " && (has(y.hostIP) ? y.hostIP : '') == (has(x.hostIP) ? x.hostIP : '')))",
                    "spec.ports: two ports bind the same hostPort, protocol and hostIP",
                )
            ],
        },
    )
    volumes: list[VolumeSpec] = Field(
        default_factory=list,
        max_length=32,
        description="Host directories to mount into the app.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                f.cel(
                    "self.all(x, self.exists_one(y, y.mountPath == x.mountPath))",
                    "spec.volumes[].mountPath must be unique",
                )
            ],
        },
    )
    resources: Resources | None = Field(
        None, description="Memory and CPU limits (defaults: Nomad's 300M and 100m)."
    )
    user: _Token | None = Field(
        None, description="User the app runs as (rkt --user): name, uid or path in the image."
    )
    group: _Token | None = Field(
        None, description="Group the app runs as (rkt --group): name, gid or path in the image."
    )
    no_overlay: bool = Field(
        False, description="Copy the image instead of using overlayfs (rkt --no-overlay=true)."
    )
    debug: bool = Field(False, description="Run rkt with --debug=true.")
    kill_timeout_seconds: int = Field(
        5,
        ge=0,
        le=86400,
        description="Seconds between the stop request and the forced kill. Capped by the "
        "node's maximum; 0 means 1 second (Nomad's kill_timeout rules).",
    )
    restart_policy: RestartPolicy = Field(
        "Always",
        description="When the agent starts the pod again after it exits: Always (default, as "
        "for Pods), OnFailure (non-zero exit) or Never.",
    )
    progress_deadline_seconds: int = Field(
        600,
        ge=1,
        le=31536000,
        description="Seconds a start may keep failing for a cause that can heal (rkt failing "
        "or hanging, the image not in the store yet, a lock, a missing Secret) before the "
        "task reports Stalled=True (reason ProgressDeadlineExceeded), as a Deployment's "
        "progressDeadlineSeconds. The agent keeps retrying at the capped restart back-off "
        "after that, so the task recovers by itself when the cause goes away. An invalid "
        "spec stalls at once.",
    )
    readiness_probe: Probe | None = Field(
        None,
        description="Command run periodically inside the pod: the task is Ready only while "
        "it succeeds (phase stays Running, Ready=False with reason ProbeFailed otherwise). "
        "Without it the task is Ready as soon as the pod runs. Changing it keeps the pod.",
    )
    liveness_probe: LivenessProbe | None = Field(
        None,
        description="Command run periodically inside the pod: when it fails failureThreshold "
        "times in a row the pod is stopped and counted as failed, then restartPolicy applies. "
        "Changing it keeps the pod.",
    )
    logs: LogConfig | None = Field(
        None,
        description="Rotation of the pod's stdout and stderr files in the task directory "
        "(alloc/logs/<pod uuid>.stdout.0, .1...; defaults: 10 files of 10 MiB per stream). "
        "A change of logs alone does not restart the pod.",
    )

    @field_validator("env")
    @classmethod
    def _unique_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        if dups := _duplicates([v.name for v in value]):
            raise ValueError(f"env: duplicate variable names {dups}")
        return value

    @field_validator("node_selector")
    @classmethod
    def _selector_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_SELECTOR:
            raise ValueError(f"nodeSelector: at most {MAX_SELECTOR} labels")
        bad = sorted(k for k in value if len(k) > 316 or not re.fullmatch(LABEL_KEY, k))
        if bad:
            raise ValueError(f"nodeSelector: {bad} are not label keys ([prefix/]name)")
        return value

    @field_validator("insecure_options")
    @classmethod
    def _unique_options(cls, value: list[str]) -> list[str]:
        if dups := _duplicates(value):
            raise ValueError(f"insecureOptions: duplicate values {dups}")
        return value

    @field_validator("dns_servers")
    @classmethod
    def _dns_special_alone(cls, value: list[str]) -> list[str]:
        if len(value) > 1 and any(v in DNS_SPECIAL for v in value):
            raise ValueError("dnsServers: host and none must be the only entry")
        return value

    @field_validator("net")
    @classmethod
    def _net_rules(cls, value: list[str]) -> list[str]:
        if len(value) > 1 and any(v in NET_SPECIAL for v in value):
            raise ValueError("net: host and none must be the only network")
        if any(v.partition(":")[0] in ("host", "all", "none") and ":" in v for v in value):
            raise ValueError("net: host, all and none take no arguments")
        if dups := _duplicates([v.partition(":")[0] for v in value]):
            raise ValueError(f"net: networks listed twice {dups}")
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[PortSpec]) -> list[PortSpec]:
        if dups := _duplicates([p.name for p in value]):
            raise ValueError(f"ports: duplicate names {dups}")
        bindings = [f"{p.host_ip or ''}:{p.host_port}/{p.protocol}" for p in value if p.host_port]
        if dups := _duplicates(bindings):
            raise ValueError(f"ports: two ports bind the same hostPort, protocol and hostIP {dups}")
        return value

    @field_validator("volumes")
    @classmethod
    def _unique_volumes(cls, value: list[VolumeSpec]) -> list[VolumeSpec]:
        if dups := _duplicates([v.name for v in value]):
            raise ValueError(f"volumes: duplicate names {dups}")
        if dups := _duplicates([v.mount_path for v in value]):
            raise ValueError(f"volumes: mountPath must be unique {dups}")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> RktTaskSpec:
        if self.dns_search_domains and any(v in DNS_SPECIAL for v in self.dns_servers):
            raise ValueError("dnsSearchDomains cannot be combined with dnsServers host or none")
        if self.net == ["none"] and any(p.host_port for p in self.ports):
            raise ValueError(
                "ports[].hostPort cannot be used with net [none]: the pod only has a loopback"
            )
        return self


def validation_problems(exc: ValidationError, *, prefix: str = "spec") -> list[tuple[str, str]]:
    """Flatten a ``ValidationError`` into ``(field path, message)`` pairs such as
    ``("spec.ports[1].hostPort", "Input should be less than or equal to 65535")``."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        path = prefix
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = error["msg"].removeprefix("Value error, ")
        problems.append((path, message))
    return problems
