"""The parts of a Nomad job the converter looks at, as one typed model whatever the input
form (HCL1, HCL2, API JSON): ``Job`` -> ``Group`` -> ``Task``.

Values are kept as Nomad gave them (config options untouched, durations in seconds);
deciding what they become is ``mapping``'s job. Stanzas the model has no place for are
kept by name in ``other`` so that ``mapping`` can report each of them.

HCL trees differ between the parsers: pyhcl gives a labelled block as ``{label: body}``
and repeated blocks as lists, python-hcl2 gives every block as a list. ``_blocks`` and
``_labelled`` accept every shape.

Why this module is long (about 550 lines): it holds the two builders of the one model, from
HCL trees and from the API's JSON, side by side so that a stanza added to one is added to
the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rkt_operator.convert.jobfile import Expr, JobFile


@dataclass(frozen=True)
class Rule:
    """A ``constraint`` or ``affinity``: ``attribute operator value`` (weight for affinities)."""

    attribute: str
    operator: str
    value: str
    weight: int | None = None


@dataclass(frozen=True)
class Port:
    """A port of a ``network`` stanza: its label, static host port and ``to`` port."""

    label: str
    static: int | None
    to: int | None = None


@dataclass(frozen=True)
class Check:
    name: str
    type: str
    command: str | None
    args: tuple[str, ...]
    interval_s: float | None
    timeout_s: float | None
    path: str | None = None
    port: str | None = None
    check_restart_limit: int | None = None
    check_restart_grace_s: float | None = None


@dataclass(frozen=True)
class Service:
    name: str
    port: str | None
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Template:
    destination: str
    env: bool
    data: str | None
    source: str | None
    change_mode: str | None


@dataclass(frozen=True)
class Restart:
    attempts: int | None
    interval_s: float | None
    delay_s: float | None
    mode: str | None


@dataclass
class Task:
    name: str
    driver: str
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    kill_timeout_s: float | None = None
    kill_signal: str | None = None
    cpu: Any = None
    memory: Any = None
    ports: list[Port] = field(default_factory=list)
    logs: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    templates: list[Template] = field(default_factory=list)
    vault: dict[str, Any] | None = None
    services: list[Service] = field(default_factory=list)
    constraints: list[Rule] = field(default_factory=list)
    affinities: list[Rule] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    restart: Restart | None = None


@dataclass
class Group:
    name: str
    count: Any = 1
    tasks: list[Task] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    restart: Restart | None = None
    reschedule: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    constraints: list[Rule] = field(default_factory=list)
    affinities: list[Rule] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


@dataclass
class Job:
    name: str
    type: str = "service"
    region: str | None = None
    namespace: str | None = None
    datacenters: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    constraints: list[Rule] = field(default_factory=list)
    affinities: list[Rule] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


class JobShapeError(ValueError):
    """The file parsed but is not shaped like a Nomad job (no ``job`` block...)."""


# ----- durations ----------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(value: Any, *, nanoseconds: bool = False) -> float | None:
    """A Go duration (``"1m30s"``), or an integer of nanoseconds (API JSON) -> seconds.
    ``None`` for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1e9 if nanoseconds else float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


# ----- HCL trees ----------------------------------------------------------------------------


def _blocks(node: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Bodies of the unlabelled blocks ``key { ... }`` (or an object attribute ``key = {}``)."""
    value = node.get(key)
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def _merged(node: dict[str, Any], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for body in _blocks(node, key):
        out.update(body)
    return out


def _labelled(node: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """``key "label" { ... }`` blocks as (label, body), in file order."""
    value = node.get(key)
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        for label, body in item.items():
            if isinstance(body, dict):
                out.append((str(label), body))
            elif isinstance(body, list):  # pyhcl: the same label given twice
                out.extend((str(label), b) for b in body if isinstance(b, dict))
    return out


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _hcl_rules(node: dict[str, Any], key: str) -> list[Rule]:
    rules = []
    for body in _blocks(node, key):
        operator = _str(body.get("operator")) or "="
        attribute = _str(body.get("attribute")) or ""
        value = _str(body.get("value")) or ""
        # The shorthand forms: distinct_hosts = true, version = ">= 1.2", regexp = "...".
        for short in ("distinct_hosts", "distinct_property", "version", "semver", "regexp",
                      "set_contains", "set_contains_any", "set_contains_all"):  # fmt: skip
            if short in body:
                operator, value = short, _str(body[short]) or ""
        weight = _int(body.get("weight")) if key == "affinity" else None
        rules.append(Rule(attribute, operator, value, weight))
    return rules


def _hcl_ports(network_bodies: list[dict[str, Any]]) -> list[Port]:
    ports: list[Port] = []
    for network in network_bodies:
        for label, body in _labelled(network, "port"):
            ports.append(Port(label, _int(body.get("static")), _int(body.get("to"))))
    return ports


def _hcl_checks(service: dict[str, Any]) -> tuple[Check, ...]:
    checks = []
    for body in _blocks(service, "check"):
        restart = _merged(body, "check_restart")
        args = body.get("args") or []
        checks.append(
            Check(
                name=_str(body.get("name")) or "",
                type=_str(body.get("type")) or "",
                command=_str(body.get("command")),
                args=tuple(str(a) for a in (args if isinstance(args, list) else [args])),
                interval_s=duration_seconds(body.get("interval")),
                timeout_s=duration_seconds(body.get("timeout")),
                path=_str(body.get("path")),
                port=_str(body.get("port")),
                check_restart_limit=_int(restart.get("limit")) if restart else None,
                check_restart_grace_s=duration_seconds(restart.get("grace")) if restart else None,
            )
        )
    return tuple(checks)


def _hcl_services(node: dict[str, Any]) -> list[Service]:
    return [
        Service(_str(b.get("name")) or "", _str(b.get("port")), _hcl_checks(b))
        for b in _blocks(node, "service")
    ]


def _hcl_restart(node: dict[str, Any]) -> Restart | None:
    if "restart" not in node:
        return None
    body = _merged(node, "restart")
    return Restart(
        _int(body.get("attempts")),
        duration_seconds(body.get("interval")),
        duration_seconds(body.get("delay")),
        _str(body.get("mode")),
    )


_TASK_KEYS = {
    "driver", "config", "env", "user", "kill_timeout", "kill_signal", "resources", "logs",
    "meta", "template", "vault", "service", "constraint", "affinity", "restart",
}  # fmt: skip
_GROUP_KEYS = {
    "count", "task", "network", "restart", "reschedule", "meta", "service", "constraint",
    "affinity",
}  # fmt: skip
_JOB_KEYS = {
    "type", "region", "namespace", "datacenters", "meta", "constraint", "affinity", "group",
    "task", "id", "name",
}  # fmt: skip


def _hcl_task(name: str, body: dict[str, Any]) -> Task:
    resources = _merged(body, "resources")
    vault = _merged(body, "vault") if "vault" in body else None
    logs = _merged(body, "logs") if "logs" in body else None
    config = _merged(body, "config")
    templates = [
        Template(
            destination=_str(t.get("destination")) or "",
            env=t.get("env") is True or t.get("env") == "true",
            data=_str(t.get("data")),
            source=_str(t.get("source")),
            change_mode=_str(t.get("change_mode")),
        )
        for t in _blocks(body, "template")
    ]
    return Task(
        name=name,
        driver=_str(body.get("driver")) or "",
        config=config,
        env=_merged(body, "env"),
        user=_str(body.get("user")),
        kill_timeout_s=duration_seconds(body.get("kill_timeout")),
        kill_signal=_str(body.get("kill_signal")),
        cpu=resources.get("cpu"),
        memory=resources.get("memory"),
        ports=_hcl_ports(_blocks(resources, "network")),
        logs=logs,
        meta=_merged(body, "meta"),
        templates=templates,
        vault=vault,
        services=_hcl_services(body),
        constraints=_hcl_rules(body, "constraint"),
        affinities=_hcl_rules(body, "affinity"),
        other=sorted(k for k in body if k not in _TASK_KEYS),
        restart=_hcl_restart(body),
    )


def _hcl_group(name: str, body: dict[str, Any]) -> Group:
    return Group(
        name=name,
        count=body.get("count", 1),
        tasks=[_hcl_task(n, b) for n, b in _labelled(body, "task")],
        ports=_hcl_ports(_blocks(body, "network")),
        restart=_hcl_restart(body),
        reschedule="reschedule" in body,
        meta=_merged(body, "meta"),
        services=_hcl_services(body),
        constraints=_hcl_rules(body, "constraint"),
        affinities=_hcl_rules(body, "affinity"),
        other=sorted(k for k in body if k not in _GROUP_KEYS),
    )


def _hcl_jobs(tree: dict[str, Any]) -> list[Job]:
    jobs = []
    for name, body in _labelled(tree, "job"):
        groups = [_hcl_group(n, b) for n, b in _labelled(body, "group")]
        # A task directly in the job is a group of its own with the task's name (Nomad 0.x).
        groups += [Group(name=n, tasks=[_hcl_task(n, b)]) for n, b in _labelled(body, "task")]
        datacenters = body.get("datacenters") or []
        jobs.append(
            Job(
                name=_str(body.get("id")) or name,
                type=_str(body.get("type")) or "service",
                region=_str(body.get("region")),
                namespace=_str(body.get("namespace")),
                datacenters=[str(d) for d in datacenters] if isinstance(datacenters, list) else [],
                meta=_merged(body, "meta"),
                constraints=_hcl_rules(body, "constraint"),
                affinities=_hcl_rules(body, "affinity"),
                groups=groups,
                other=sorted(k for k in body if k not in _JOB_KEYS),
            )
        )
    return jobs


# ----- API JSON -----------------------------------------------------------------------------


def _api_rules(items: Any) -> list[Rule]:
    return [
        Rule(
            _str(item.get("LTarget")) or "",
            _str(item.get("Operand")) or "=",
            _str(item.get("RTarget")) or "",
            _int(item.get("Weight")),
        )
        for item in items or []
        if isinstance(item, dict)
    ]


def _api_ports(networks: Any) -> list[Port]:
    ports: list[Port] = []
    for network in networks or []:
        if not isinstance(network, dict):
            continue
        ports.extend(
            Port(str(port.get("Label")), _int(port.get("Value")), _int(port.get("To")))
            for port in network.get("ReservedPorts") or []
        )
        ports.extend(
            Port(str(port.get("Label")), None, _int(port.get("To")) or None)
            for port in network.get("DynamicPorts") or []
        )
    return ports


def _api_services(items: Any) -> list[Service]:
    services = []
    for svc in items or []:
        checks = []
        for c in svc.get("Checks") or []:
            restart = c.get("CheckRestart") or {}
            checks.append(
                Check(
                    name=_str(c.get("Name")) or "",
                    type=_str(c.get("Type")) or "",
                    command=_str(c.get("Command")) or None,
                    args=tuple(str(a) for a in c.get("Args") or []),
                    interval_s=duration_seconds(c.get("Interval"), nanoseconds=True),
                    timeout_s=duration_seconds(c.get("Timeout"), nanoseconds=True),
                    path=_str(c.get("Path")) or None,
                    port=_str(c.get("PortLabel")) or None,
                    check_restart_limit=_int(restart.get("Limit")) if restart else None,
                    check_restart_grace_s=duration_seconds(restart.get("Grace"), nanoseconds=True)
                    if restart
                    else None,
                )
            )
        services.append(
            Service(_str(svc.get("Name")) or "", _str(svc.get("PortLabel")) or None, tuple(checks))
        )
    return services


def _api_restart(value: Any) -> Restart | None:
    if not isinstance(value, dict):
        return None
    return Restart(
        _int(value.get("Attempts")),
        duration_seconds(value.get("Interval"), nanoseconds=True),
        duration_seconds(value.get("Delay"), nanoseconds=True),
        _str(value.get("Mode")),
    )


def _api_task(t: dict[str, Any]) -> Task:
    resources = t.get("Resources") or {}
    logs = t.get("LogConfig")
    other = []
    if t.get("Artifacts"):
        other.append("artifact")
    if t.get("DispatchPayload"):
        other.append("dispatch_payload")
    if t.get("Lifecycle"):
        other.append("lifecycle")
    if t.get("VolumeMounts"):
        other.append("volume_mount")
    templates = [
        Template(
            destination=_str(tp.get("DestPath")) or "",
            env=bool(tp.get("Envvars")),
            data=_str(tp.get("EmbeddedTmpl")),
            source=_str(tp.get("SourcePath")) or None,
            change_mode=_str(tp.get("ChangeMode")),
        )
        for tp in t.get("Templates") or []
    ]
    return Task(
        name=str(t.get("Name") or ""),
        driver=str(t.get("Driver") or ""),
        config=dict(t.get("Config") or {}),
        env=dict(t.get("Env") or {}),
        user=_str(t.get("User")) or None,
        kill_timeout_s=duration_seconds(t.get("KillTimeout"), nanoseconds=True),
        kill_signal=_str(t.get("KillSignal")) or None,
        cpu=resources.get("CPU"),
        memory=resources.get("MemoryMB"),
        ports=_api_ports(resources.get("Networks")),
        logs={"max_files": logs.get("MaxFiles"), "max_file_size": logs.get("MaxFileSizeMB")}
        if isinstance(logs, dict)
        else None,
        meta=dict(t.get("Meta") or {}),
        templates=templates,
        vault=dict(t["Vault"]) if isinstance(t.get("Vault"), dict) else None,
        services=_api_services(t.get("Services")),
        constraints=_api_rules(t.get("Constraints")),
        affinities=_api_rules(t.get("Affinities")),
        other=other,
        restart=None,
    )


def _api_job(job: dict[str, Any]) -> Job:
    groups = []
    for g in job.get("TaskGroups") or []:
        other = []
        if g.get("Volumes"):
            other.append("volume")
        if g.get("Spreads"):
            other.append("spread")
        if g.get("Scaling"):
            other.append("scaling")
        groups.append(
            Group(
                name=str(g.get("Name") or ""),
                count=g.get("Count", 1),
                tasks=[_api_task(t) for t in g.get("Tasks") or [] if isinstance(t, dict)],
                ports=_api_ports(g.get("Networks")),
                restart=_api_restart(g.get("RestartPolicy")),
                # The API form always carries Nomad's default reschedule policy: not a choice.
                reschedule=False,
                meta=dict(g.get("Meta") or {}),
                services=_api_services(g.get("Services")),
                constraints=_api_rules(g.get("Constraints")),
                affinities=_api_rules(g.get("Affinities")),
                other=other,
            )
        )
    other = [
        stanza
        for stanza, key in (
            ("periodic", "Periodic"),
            ("parameterized", "ParameterizedJob"),
            ("spread", "Spreads"),
            ("multiregion", "Multiregion"),
        )
        if job.get(key)
    ]
    return Job(
        name=str(job.get("ID") or job.get("Name") or ""),
        type=_str(job.get("Type")) or "service",
        region=_str(job.get("Region")) or None,
        namespace=_str(job.get("Namespace")) or None,
        datacenters=[str(d) for d in job.get("Datacenters") or []],
        meta=dict(job.get("Meta") or {}),
        constraints=_api_rules(job.get("Constraints")),
        affinities=_api_rules(job.get("Affinities")),
        groups=groups,
        other=other,
    )


def jobs(parsed: JobFile) -> list[Job]:
    """The jobs of a parsed file (usually one); ``JobShapeError`` if there are none."""
    found = [_api_job(parsed.body)] if parsed.form == "json-api" else _hcl_jobs(parsed.body)
    if not found:
        raise JobShapeError('no job "<name>" { ... } block')
    for job in found:
        if isinstance(job.name, Expr) or not job.name:
            raise JobShapeError("a job has no name")
    return found
