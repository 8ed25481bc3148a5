"""Typed settings of the node agent: the only module that reads the process environment.

Precedence: built-in defaults < environment (``RKT_OPERATOR_<FIELD>``; ``NODE_NAME`` is also
accepted for the node name, as the downward API convention has it) < command-line flags.
Every field has a description; the Helm chart's ``values.yaml`` ``agent:`` keys map one to
one onto these fields (camelCase there, snake_case here) and a test keeps them in sync.

Size: every setting with its description and bounds (the chart's values are checked
against them), and the one place the environment is read.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "RKT_OPERATOR_"

# Where the kubelet projects a pod's ServiceAccount token, CA bundle and namespace.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Another directory with the same three files (for running the agent outside a pod as if in one).
SERVICE_ACCOUNT_DIR_ENV = ENV_PREFIX + "SERVICE_ACCOUNT_DIR"

# Nomad's default env.blacklist: host variables never passed to the rkt CLI process.
DEFAULT_ENV_BLACKLIST = (
    "CONSUL_TOKEN",
    "VAULT_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


class Settings(BaseModel):
    """Everything the agent on one node needs to know. Frozen: built once, passed explicitly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_name: str = Field("", description="Name of the Kubernetes node this agent serves.")
    namespaces: tuple[str, ...] = Field(
        (), description="Namespaces to watch (kopf globs allowed); empty means all namespaces."
    )
    rkt_path: str = Field("rkt", description="The rkt binary (a path, or a name on PATH).")
    rkt_dir: Path = Field(Path("/var/lib/rkt"), description="rkt's data directory (--dir).")
    rkt_local_config: Path = Field(
        Path("/etc/rkt"), description="rkt's local configuration directory (--local-config)."
    )
    task_root: Path = Field(
        Path("/var/lib/rkt-operator/tasks"),
        description="Host directory under which each task gets its alloc/local/secrets dirs.",
    )
    volumes_enabled: bool = Field(
        True, description="Allow tasks to mount host paths (Nomad's rkt.volumes.enabled)."
    )
    volumes_allowed_host_paths: tuple[str, ...] = Field(
        (),
        description="Host path prefixes that task volumes may use; empty allows any absolute path.",
    )
    max_kill_timeout_seconds: float = Field(
        30.0,
        ge=0,
        description="Upper bound for a task's killTimeoutSeconds (Nomad max_kill_timeout).",
    )
    launcher: Literal["auto", "systemd", "detached"] = Field(
        "auto",
        description="How pods are launched so they outlive the agent: a transient systemd unit, "
        "a detached supervisor process, or auto (systemd when the host has it).",
    )
    host_launch: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Detached launcher: start each pod's supervisor in the host's mount, UTS, "
        "IPC and network namespaces (those of host_namespaces_pid) and in a host cgroup of its "
        "own (host_cgroup/<uuid>), out of the agent container's reach (needs hostPID and "
        "privileges); auto does it when the agent's mount namespace is not the host's (the "
        "agent runs in a container).",
    )
    host_namespaces_pid: int = Field(
        1,
        ge=1,
        description="The host process whose namespaces host_launch enters and compares with: "
        "PID 1, or 2 (kthreadd, always in the initial namespaces) where PID 1 may not be "
        "inspected.",
    )
    host_cgroup: str = Field(
        "rkt-operator",
        description="Cgroup, relative to the root of every hierarchy, under which host-launched "
        "pods get a cgroup <uuid> each.",
    )
    extra_path: tuple[str, ...] = Field(
        (),
        description="Host directories put first on the PATH of the rkt processes the agent "
        "starts (e.g. the directory of the systemd-nspawn wrapper on hosts without systemd).",
    )
    discovery_timeout_seconds: float = Field(
        60.0, gt=0, description="How long to wait for a started pod's IP (Nomad: 1 minute)."
    )
    rkt_timeout_seconds: float = Field(
        300.0, gt=0, description="Deadline for one rkt command (prepare may fetch an image)."
    )
    fingerprint_interval_seconds: float = Field(
        15.0, gt=0, description="How often the node fingerprint is refreshed (Nomad: 15 s)."
    )
    resync_interval_seconds: float = Field(
        5.0, gt=0, description="How often each task's pod is re-observed."
    )
    restart_backoff_seconds: float = Field(
        10.0, gt=0, description="First delay before restarting an exited pod; doubles per restart."
    )
    restart_backoff_max_seconds: float = Field(
        300.0, gt=0, description="Upper bound of the restart delay (as the kubelet's 5 minutes)."
    )
    selector: Literal["field", "label"] = Field(
        "field",
        description="Server-side filter for this node's tasks: the spec.nodeName field selector, "
        "or the rktoperator.io/node label for clusters without CRD selectableFields.",
    )
    liveness_endpoint: str = Field(
        "http://0.0.0.0:8080/healthz",
        description="The agent's liveness/readiness endpoint (200 while it hears its node's "
        "tasks, else 503); empty disables it.",
    )
    watch_stale_seconds: float = Field(
        60.0,
        gt=0,
        description="How long the agent may go without a working watch of its node's tasks "
        "(RktTask resource served, node's tasks listed) before its liveness endpoint fails; "
        "kopf is restarted in-process when the API answers but the resource is not served.",
    )
    metrics_endpoint: str = Field(
        "http://0.0.0.0:8081/metrics",
        description="Where the agent serves Prometheus metrics (http://host:port/path); "
        "empty disables it.",
    )
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    env_blacklist: tuple[str, ...] = Field(
        DEFAULT_ENV_BLACKLIST,
        description="Agent environment variables withheld from the rkt process it launches.",
    )
    publish_fingerprint: bool = Field(
        True, description="Publish the rkt fingerprint as rktoperator.io/ labels on the Node."
    )

    @field_validator(
        "namespaces", "volumes_allowed_host_paths", "env_blacklist", "extra_path", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("volumes_allowed_host_paths")
    @classmethod
    def _absolute_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not prefix.startswith("/"):
                raise ValueError(f"host path prefix must be absolute: {prefix!r}")
        return value

    @field_validator("extra_path")
    @classmethod
    def _absolute_dirs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for directory in value:
            if not directory.startswith("/") or ":" in directory:
                raise ValueError(f"PATH directory must be absolute, without ':': {directory!r}")
        return value

    @field_validator("host_cgroup")
    @classmethod
    def _relative_cgroup(cls, value: str) -> str:
        parts = value.split("/")
        if not value or value.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"expected a relative cgroup path such as rkt-operator: {value!r}")
        return value

    @field_validator("metrics_endpoint", "liveness_endpoint")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        if value:
            split_http_endpoint(value)
        return value

    @property
    def host_environment(self) -> dict[str, str]:
        """The agent's environment minus ``env_blacklist``, ``extra_path`` first on PATH: the
        rkt CLI process gets this."""
        env = {k: v for k, v in os.environ.items() if k not in self.env_blacklist}  # noqa: TID251
        if self.extra_path:
            env["PATH"] = ":".join((*self.extra_path, *filter(None, [env.get("PATH")])))
        return env


def split_http_endpoint(url: str) -> tuple[str, int, str]:
    """``http://host:port/path`` -> (host, port, path); ``ValueError`` for anything else.
    The path defaults to ``/``; port 0 means any free port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.query:
        raise ValueError(f"expected http://host:port/path, got {url!r}")
    return parts.hostname, port, parts.path or "/"


@dataclass(frozen=True)
class InClusterAccess:
    """How a pod reaches its API server, as client-go's in-cluster config does: the address
    from ``KUBERNETES_SERVICE_HOST`` / ``KUBERNETES_SERVICE_PORT`` (no DNS), the projected
    ServiceAccount token (re-read when it changes) and CA bundle."""

    host: str
    port: str
    token_file: Path
    ca_file: Path
    namespace_file: Path

    @property
    def server(self) -> str:
        """``https://host:port``; an IPv6 address in brackets, as ``net.JoinHostPort`` does."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"https://{host}:{self.port}"


def in_cluster_access(environ: Mapping[str, str] | None = None) -> InClusterAccess | None:
    """The in-cluster API access when both service variables are set (None otherwise: not in
    a pod, use a kubeconfig). The files are not read here; a missing token fails at use."""
    env = os.environ if environ is None else environ  # noqa: TID251
    host = env.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = env.get("KUBERNETES_SERVICE_PORT", "").strip()
    if not host or not port:
        return None
    directory = Path(env.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)
    return InClusterAccess(
        host=host,
        port=port,
        token_file=directory / "token",
        ca_file=directory / "ca.crt",
        namespace_file=directory / "namespace",
    )


def _field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add one flag per settings field (``--node-name``, ``--rkt-path``...) to ``parser``."""
    parser = parser or argparse.ArgumentParser(prog="rkt-operator")
    for name, field in Settings.model_fields.items():
        parser.add_argument(_field_flag(name), dest=name, default=None, help=field.description)
    return parser


def load(
    args: argparse.Namespace | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from defaults, the environment and parsed flags (highest wins).

    Raises ``ValueError`` with every offending field named when a value is invalid.
    """
    env = os.environ if environ is None else environ  # noqa: TID251
    values: dict[str, Any] = {}
    if env.get("NODE_NAME"):
        values["node_name"] = env["NODE_NAME"]
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    if args is not None:
        for name in Settings.model_fields:
            raw = getattr(args, name, None)
            if raw is not None:
                values[name] = raw
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"invalid settings: {problems}") from None


def settings_flags(settings: Settings, names: Sequence[str]) -> list[str]:
    """Render chosen fields back as flags (used to hand settings to child processes)."""
    out: list[str] = []
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        out.append(f"{_field_flag(name)}={value}")
    return out


class BinderSettings(BaseModel):
    """Settings of the binder (``rkt-operator schedule``): one per cluster, leader-elected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Literal["spread", "binpack"] = Field(
        "spread",
        description="How to choose among eligible nodes: spread (least used first, the "
        "default) or binpack (most used first, as Nomad's binpack).",
    )
    lease_namespace: str = Field(
        "default",
        description="Namespace of the coordination.k8s.io Lease used for leader election "
        "(default: POD_NAMESPACE, else default).",
    )
    lease_name: str = Field("rkt-operator-binder", description="Name of that Lease.")
    identity: str = Field(
        "",
        description="This replica's name in the Lease (default: POD_NAME, else host name and "
        "process id).",
    )
    lease_duration_seconds: float = Field(
        15.0, gt=0, description="How long a silent leader keeps the lease before others take it."
    )
    renew_deadline_seconds: float = Field(
        10.0,
        gt=0,
        description="A leader that could not renew for this long stops binding (less than "
        "leaseDurationSeconds).",
    )
    retry_period_seconds: float = Field(
        2.0, gt=0, description="How often the lease is renewed or tried."
    )
    resync_seconds: float = Field(
        30.0, gt=0, description="Re-examine unbound tasks at least this often."
    )
    health_endpoint: str = Field(
        "",
        description="Where to answer liveness probes (http://host:port/path): 200 while the "
        "main loop is alive. Empty disables it.",
    )
    bind_workers: int = Field(
        8, ge=1, le=64, description="Binds written concurrently (decisions stay one at a time)."
    )
    kubeconfig: str | None = Field(
        None, description="kubeconfig file (default: in-cluster, else the usual lookup)."
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")

    @field_validator("health_endpoint")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        if value:
            split_http_endpoint(value)
        return value

    @field_validator("renew_deadline_seconds")
    @classmethod
    def _below_lease_duration(cls, value: float, info: Any) -> float:
        duration = info.data.get("lease_duration_seconds")
        if duration is not None and value >= duration:
            raise ValueError("must be less than lease_duration_seconds")
        return value


def build_binder_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """One flag per binder setting (``--strategy``, ``--lease-namespace``...)."""
    for name, field in BinderSettings.model_fields.items():
        parser.add_argument(_field_flag(name), dest=name, default=None, help=field.description)
    return parser


def load_binder(
    args: argparse.Namespace | None = None, *, environ: Mapping[str, str] | None = None
) -> BinderSettings:
    """Binder settings from defaults, POD_NAMESPACE / POD_NAME and flags (highest wins)."""
    env = os.environ if environ is None else environ  # noqa: TID251
    values: dict[str, Any] = {}
    if env.get("POD_NAMESPACE"):
        values["lease_namespace"] = env["POD_NAMESPACE"]
    values["identity"] = env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    if args is not None:
        for name in BinderSettings.model_fields:
            raw = getattr(args, name, None)
            if raw is not None:
                values[name] = raw
    try:
        return BinderSettings.model_validate(values, strict=False)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"invalid settings: {problems}") from None
