"""Nomad job model -> RktTask manifests, and what could not be converted.

One manifest per task with ``driver = "rkt"`` and per instance of its group's ``count``
(a ``system`` job: one instance per node given). Every spec is checked with the agent's own
``RktTaskSpec`` before it is emitted, so what comes out passes the CRD too.

Each decision that is not one to one is reported as a ``Finding`` naming job, group, task
and stanza: a *note* when the meaning is kept in another form (restart attempts become the
agent's back-off, ``reschedule`` has no use on a bound task...), a *warning* when something
is left out (a Consul service, a file template, an artifact, a task of another driver...).
Warnings make ``rkt-operator convert`` exit 2.

Mapping rules (the README's migration tables, applied):

- ``config`` options -> the fields of the same meaning (``port_map`` with the network
  ports -> ``ports``; ``volumes`` strings -> ``volumes`` objects); ``args`` and ``env``
  interpolation ``${VAR}`` -> ``$(VAR)`` (agent expansion, args only) or the literal value;
- ``resources``: memory MB -> ``<MB>Mi`` (Nomad's MB are MiB); cpu MHz -> ``<MHz>m``, the
  CFS quota the driver really applied, or cores at ``cpu_mhz_per_core`` when given;
- group/task ``restart`` (and the job type) -> ``restartPolicy``; ``logs``;
  ``kill_timeout``; ``user``;
- ``constraint`` pinning ``${node.unique.name}`` / ``${attr.unique.hostname}`` -> nodeName;
  others -> ``nodeSelector`` / ``affinity`` when the API has them, else a comment;
- ``meta`` -> annotations ``meta.nomad.rktoperator.io/<key>`` and ``NOMAD_META_*``;
- the driver's task environment (``NOMAD_TASK_DIR``, ``NOMAD_ALLOC_INDEX``, ports...) ->
  ``env`` entries with the values Nomad would have given (``nomad_env``);
- ``template { env = true }`` and ``vault`` -> ``secretKeyRef`` env entries on a Secret the
  user must provide (warning); script checks -> ``readinessProbe`` / ``livenessProbe``.

Why this module is long (about 900 lines): it is the mapping table of the README in code,
one ``_TaskConverter`` method per Nomad stanza, each with the finding it reports. Kept in
one place so that the whole mapping can be read (and reviewed against the README) from top
to bottom; the parts that stand alone live beside it (``placement``, ``jobfile``,
``nomad``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from rkt_operator.convert import placement
from rkt_operator.convert.jobfile import Expr
from rkt_operator.convert.nomad import Group, Job, Port, Rule, Service, Task
from rkt_operator.model import api
from rkt_operator.model.spec import INSECURE_OPTIONS, RktTaskSpec, validation_problems

API_VERSION = api.API_VERSION
KIND = api.KIND
LABEL_PREFIX = api.PREFIX + "nomad-"
META_ANNOTATION_PREFIX = f"meta.nomad.{api.PREFIX}"
SOURCE_ANNOTATION = api.PREFIX + "nomad-source"
DRIVER_OPTIONS = (
    "image", "command", "args", "trust_prefix", "insecure_options", "dns_servers",
    "dns_search_domains", "net", "port_map", "volumes", "no_overlay", "debug", "group",
)  # fmt: skip
# Stanzas whose purpose has no object here but whose absence changes nothing a task does.
_NOTE_STANZAS = {
    "update": "RktTask updates replace the pod in place (no canaries, no staggering)",
    "migrate": "a bound task does not move between nodes",
    "reschedule": "a bound task is restarted on its node by restartPolicy, never moved",
    "ephemeral_disk": "the task directories live under the agent's taskRoot",
    "datacenters": "placement is by node (spec.nodeName)",
    "region": "placement is by node (spec.nodeName)",
    "priority": "the agent starts tasks as it sees them",
    "all_at_once": "no scheduler evaluation to batch",
}
# Field order of the emitted specs (the README's table order: what a reader looks for first).
_SPEC_ORDER = [
    "nodeName", "nodeSelector", "affinity", "image", "command", "args", "env", "ports",
    "resources", "restartPolicy",
    "volumes", "trustPrefix", "insecureOptions", "dnsServers", "dnsSearchDomains", "net",
    "user", "group", "noOverlay", "debug", "killTimeoutSeconds", "logs", "readinessProbe",
    "livenessProbe",
]  # fmt: skip
_MAX_KILL_TIMEOUT = 86400

Level = Literal["warning", "note"]


@dataclass(frozen=True)
class Finding:
    """Something not converted one to one, and where it came from."""

    level: Level
    job: str
    group: str | None
    task: str | None
    stanza: str
    message: str

    def __str__(self) -> str:
        where = f'job "{self.job}"'
        if self.group is not None:
            where += f' group "{self.group}"'
        if self.task is not None:
            where += f' task "{self.task}"'
        return f'{self.level}: {where} stanza "{self.stanza}": {self.message}'


@dataclass(frozen=True)
class Options:
    nodes: tuple[str, ...] = ()
    namespace: str | None = None
    nomad_env: bool = True
    cpu_mhz_per_core: int | None = None
    source: str = ""


@dataclass
class Manifest:
    """One RktTask: the object and the comment lines written above it."""

    body: dict[str, Any]
    comments: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass
class Result:
    manifests: list[Manifest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return any(f.level == "warning" for f in self.findings)


# ----- small value helpers ------------------------------------------------------------------


def _bool(value: Any) -> bool | None:
    """Nomad's weak decoding of booleans ("true", "1", 1...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "1", "t", "false", "0", "f", ""):
        return value.lower() in ("true", "1", "t")
    return None


def _strings(value: Any) -> list[Any]:
    """Weak decoding of a list of strings (a single value is a list of one)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _port_map(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in _strings(value):
        if isinstance(item, dict):
            out.update(item)
    return out


_NAME_JUNK = re.compile(r"[^a-z0-9.-]+")


def object_name(*parts: str) -> str:
    """A DNS-1123 name from the Nomad names, consecutive repeats collapsed."""
    kept: list[str] = []
    for part in parts:
        if not kept or kept[-1] != part:
            kept.append(part)
    text = _NAME_JUNK.sub("-", "-".join(kept).lower())
    text = re.sub(r"-{2,}", "-", text).strip("-.")[:253].rstrip("-.")
    return text or "task"


_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_ANNOTATION_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_INTERP = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_TEMPLATE_KEY = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)


def _label_value(text: str) -> str | None:
    return text if len(text) <= 63 and _LABEL_VALUE.match(text) else None


# ----- the converter ------------------------------------------------------------------------


class _TaskScope:
    """Findings of one job/group/task, and the instance being built."""

    def __init__(self, sink: list[Finding], job: str, group: str | None, task: str | None):
        self._sink = sink
        self.job, self.group, self.task = job, group, task

    def warn(self, stanza: str, message: str) -> None:
        self._add(Finding("warning", self.job, self.group, self.task, stanza, message))

    def note(self, stanza: str, message: str) -> None:
        self._add(Finding("note", self.job, self.group, self.task, stanza, message))

    def _add(self, finding: Finding) -> None:
        if finding not in self._sink:
            self._sink.append(finding)


def convert(jobs: list[Job], options: Options, *, taken: set[str] | None = None) -> Result:
    """Manifests and findings for ``jobs``; ``taken`` holds the names already used (it is
    updated), so that several files converted together never yield the same name twice."""
    result = Result()
    names = taken if taken is not None else set()
    for job in jobs:
        _convert_job(job, options, result, names)
    return result


def _convert_job(job: Job, options: Options, result: Result, names: set[str]) -> None:
    scope = _TaskScope(result.findings, job.name, None, None)
    for stanza in job.other:
        _other_stanza(scope, stanza, "job")
    if len(job.datacenters) > 1 or job.region:
        scope.note("datacenters", _NOTE_STANZAS["datacenters"])
    if job.type in ("system", "sysbatch"):
        scope.note("type", f"a {job.type} job: one instance per node given with --node")
    alloc_counter = 0
    bound: dict[tuple[str, int, str], str] = {}
    for group in job.groups:
        gscope = _TaskScope(result.findings, job.name, group.name, None)
        for stanza in group.other:
            _other_stanza(gscope, stanza, "group")
        if group.reschedule:
            gscope.note("reschedule", _NOTE_STANZAS["reschedule"])
        for svc in group.services:
            gscope.warn("service", _service_message(svc))
        count = _count(group, job, options, gscope)
        rkt_tasks = []
        for task in group.tasks:
            if task.driver != "rkt":
                _TaskScope(result.findings, job.name, group.name, task.name).warn(
                    "driver", f'driver "{task.driver}" is not rkt: the task is not converted'
                )
            else:
                rkt_tasks.append(task)
        if len(rkt_tasks) > 1:
            gscope.note(
                "task",
                "each task becomes its own RktTask with its own /alloc directory (Nomad "
                "shared /alloc between the tasks of a group)",
            )
        for index in range(count):
            node = options.nodes[alloc_counter % len(options.nodes)] if options.nodes else None
            if job.type in ("system", "sysbatch"):
                node = options.nodes[index]
            alloc_counter += 1
            for task in rkt_tasks:
                tscope = _TaskScope(result.findings, job.name, group.name, task.name)
                manifest = _TaskConverter(job, group, task, index, count, node, options, tscope)()
                if manifest is None:
                    continue
                base = manifest.name
                suffix = 2
                while manifest.name in names:
                    manifest.body["metadata"]["name"] = f"{base}-{suffix}"
                    suffix += 1
                if manifest.name != base:
                    tscope.note("name", f"renamed {manifest.name}: {base} was taken")
                names.add(manifest.name)
                result.manifests.append(manifest)
                spec = manifest.body["spec"]
                for port in spec.get("ports", []):
                    if "hostPort" not in port or "nodeName" not in spec:
                        continue
                    key = (spec["nodeName"], port["hostPort"], port.get("protocol", "TCP"))
                    if key in bound:
                        tscope.warn(
                            "network.port",
                            f"{manifest.name} and {bound[key]} both bind host port "
                            f"{key[1]}/{key[2]} on node {key[0]}: the later one cannot start "
                            "there (give more --node names)",
                        )
                    else:
                        bound[key] = manifest.name


def _count(group: Group, job: Job, options: Options, scope: _TaskScope) -> int:
    if job.type in ("system", "sysbatch"):
        if not options.nodes:
            scope.warn("type", f"a {job.type} job needs the nodes to run on: pass --node")
        return len(options.nodes)
    count = group.count
    if isinstance(count, str) and count.strip().isdigit():  # --var values are strings
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        scope.warn("count", f"count {count} is not a number here; one instance is converted")
        return 1
    if count == 0:
        scope.note("count", "count = 0: no instance to convert")
    return count


def _other_stanza(scope: _TaskScope, stanza: str, level: str) -> None:
    if stanza in _NOTE_STANZAS:
        scope.note(stanza, _NOTE_STANZAS[stanza])
    elif stanza in ("variable", "locals"):
        scope.note(stanza, "HCL2 locals are not evaluated; expressions using them are reported")
    else:
        scope.warn(stanza, f"{level} stanza {stanza!r} has no RktTask equivalent: not converted")


def _service_message(svc: Service) -> str:
    text = (
        f"service {svc.name or '(unnamed)'!r}: no Consul registration here; clients find the "
        "task at status.ip and status.portMap (or put a Kubernetes Service in front)"
    )
    others = [c for c in svc.checks if c.type != "script"]
    if others:
        hints = []
        for check in others:
            if check.type == "http":
                url = f"http://127.0.0.1:<port>{check.path or '/'}"
                hints.append(
                    f"http check {check.name or check.path!r} -> readinessProbe exec "
                    f"['wget', '-q', '-O', '/dev/null', '{url}']"
                )
            else:
                hints.append(
                    f"{check.type} check {check.name!r} -> readinessProbe exec of a command "
                    "that tests the port inside the pod (e.g. ['nc', '-z', '127.0.0.1', '<port>'])"
                )
        text += "; not converted, suggested: " + "; ".join(hints)
    return text


class _TaskConverter:
    """Builds the manifest of one instance of one task (``__call__``), or ``None``."""

    def __init__(
        self,
        job: Job,
        group: Group,
        task: Task,
        index: int,
        count: int,
        node: str | None,
        options: Options,
        scope: _TaskScope,
    ) -> None:
        self.job, self.group, self.task = job, group, task
        self.index, self.count, self.node = index, count, node
        self.options, self.scope = options, scope
        self.comments: list[str] = []
        self.nomad_vars: dict[str, str] = {}

    def __call__(self) -> Manifest | None:
        task, config = self.task, self.task.config
        for key in config:
            if key not in DRIVER_OPTIONS:
                self.scope.warn(
                    "config", f'"{key}" is an invalid field of the rkt driver: not converted'
                )
        image = config.get("image")
        if not isinstance(image, str) or not image:
            self.scope.warn("config", 'field "image" is required: the task is not converted')
            return None
        spec: dict[str, Any] = {}
        self._placement(spec)
        spec["image"] = self._literal("config.image", image)
        self._config(spec)
        ports = self._ports(spec)
        self._resources(spec)
        self.nomad_vars = self._nomad_env(ports) if self.options.nomad_env else {}
        self._env(spec)
        if "args" in config:
            args = [self._arg(str(a)) for a in _strings(config["args"])]
            if args:
                spec["args"] = args
        self._restart(spec)
        self._logs(spec)
        self._kill(spec)
        if task.user:
            spec["user"] = self._literal("user", task.user)
        self._templates_and_vault(spec)
        self._services(spec)
        for stanza in task.other:
            _other_stanza(self.scope, stanza, "task")
        metadata = self._metadata()
        try:
            RktTaskSpec.model_validate(spec)
        except ValidationError as exc:
            problems = "; ".join(f"{p}: {m}" for p, m in validation_problems(exc))
            self.scope.warn("config", f"the converted spec is not valid ({problems}): not emitted")
            return None
        spec = {k: spec[k] for k in sorted(spec, key=_SPEC_ORDER.index)}
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
        where = f'job "{self.job.name}" group "{self.group.name}" task "{task.name}"'
        instance = f" (instance {self.index} of {self.count})" if self.count > 1 else ""
        source = f" in {self.options.source}" if self.options.source else ""
        return Manifest(body, [f"Converted from {where}{instance}{source}", *self.comments])

    # ----- identity ---------------------------------------------------------------------

    @property
    def alloc_name(self) -> str:
        return f"{self.job.name}.{self.group.name}[{self.index}]"

    def _metadata(self) -> dict[str, Any]:
        parts = [self.job.name, self.group.name, self.task.name]
        name = object_name(*parts) + (f"-{self.index}" if self.count > 1 else "")
        metadata: dict[str, Any] = {"name": name}
        if self.options.namespace:
            metadata["namespace"] = self.options.namespace
        labels = {}
        for key, value in (
            ("job", self.job.name),
            ("group", self.group.name),
            ("task", self.task.name),
            ("alloc-index", str(self.index)),
        ):
            if (label := _label_value(value)) is not None:
                labels[LABEL_PREFIX + key] = label
        metadata["labels"] = labels
        annotations = {SOURCE_ANNOTATION: f"{self.alloc_name}/{self.task.name}"}
        for key, value in self._meta().items():
            if _ANNOTATION_NAME.match(key) and len(key) <= 63:
                annotations[META_ANNOTATION_PREFIX + key] = str(value)
            else:
                self.scope.warn("meta", f"key {key!r} cannot be an annotation name: not converted")
        metadata["annotations"] = annotations
        return metadata

    def _meta(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for source in (self.job.meta, self.group.meta, self.task.meta):
            merged.update(source)
        return merged

    # ----- placement ----------------------------------------------------------------------

    def _placement(self, spec: dict[str, Any]) -> None:
        """nodeName (``--node``, or a constraint pinning the task), else nodeSelector and
        affinity for the binder; rules without an equivalent become comments + warnings."""
        system = self.job.type in ("system", "sysbatch")
        placed = placement.place(
            [*self.job.constraints, *self.group.constraints, *self.task.constraints],
            [*self.job.affinities, *self.group.affinities, *self.task.affinities],
            node=self.node,
            system=system,
        )
        for stanza, rule in placed.implied:
            self.scope.note(
                stanza, f"{_rule_text(rule)}: every node the tasks run on has rkt (the agent's "
                "fingerprint label rktoperator.io/rkt=true)",
            )  # fmt: skip
        for stanza, rule, why in placed.unconverted:
            self.comments.append(f"{stanza} {_rule_text(rule)}: not converted ({why})")
            self.scope.warn(stanza, f"{_rule_text(rule)}: not converted ({why})")
        fields = placed.spec_fields()
        if placed.node is None:
            spec.update(fields)
            self.scope.note(
                "constraint",
                "no --node: spec.nodeName is left out, the binder (rkt-operator schedule) "
                "binds the task to a node matching its nodeSelector and affinity",
            )
            return
        if self.node and placed.node != self.node:
            self.scope.note(
                "constraint", f"the job pins the task to node {placed.node}: --node not used"
            )
        spec["nodeName"] = placed.node
        if fields:
            self.comments.append(
                f"bound to node {placed.node}: the converted placement rules are not checked "
                f"(without --node they would be: {json.dumps(fields, sort_keys=True)})"
            )
            self.scope.note(
                "constraint",
                "bound to the node given: its constraints and affinities are not checked "
                "(leave out --node to let the binder place the task by them)",
            )

    # ----- config ---------------------------------------------------------------------------

    def _literal(self, stanza: str, value: Any) -> Any:
        """A value used as it is: report HCL2 expressions and interpolations."""
        if isinstance(value, Expr):
            self.scope.warn(stanza, f"the expression {value.text} is not evaluated; kept as text")
            return value.text
        if isinstance(value, str) and "${" in value:
            self.scope.warn(
                stanza, f"{value!r}: Nomad's driver used this option literally (no interpolation)"
            )
        return value

    def _config(self, spec: dict[str, Any]) -> None:
        config = self.task.config
        for key, field_name in (("command", "command"), ("trust_prefix", "trustPrefix"),
                                ("group", "group")):  # fmt: skip
            if config.get(key) not in (None, ""):
                spec[field_name] = self._literal(f"config.{key}", str(config[key]))
        options = []
        for value in _strings(config.get("insecure_options")):
            if str(value) in INSECURE_OPTIONS:
                options.append(str(value))
            else:
                self.scope.warn(
                    "config.insecure_options", f"{value!r} is not an rkt insecure option: dropped"
                )
        if options:
            spec["insecureOptions"] = list(dict.fromkeys(options))
        lists = (("dns_servers", "dnsServers"), ("dns_search_domains", "dnsSearchDomains"))
        for key, field_name in (*lists, ("net", "net")):
            values = [str(self._literal(f"config.{key}", v)) for v in _strings(config.get(key))]
            if values:
                spec[field_name] = values
        for key, field_name in (("no_overlay", "noOverlay"), ("debug", "debug")):
            if key in config:
                flag = _bool(config[key])
                if flag is None:
                    self.scope.warn(f"config.{key}", f"{config[key]!r} is not a boolean: dropped")
                elif flag:
                    spec[field_name] = True
        volumes = []
        for i, raw in enumerate(_strings(config.get("volumes"))):
            parts = str(raw).split(":")
            if len(parts) not in (2, 3):
                self.scope.warn("config.volumes", f"invalid rkt volume: {str(raw)!r} (Nomad E9)")
                continue
            if not (parts[0].startswith("/") and parts[1].startswith("/")):
                self.scope.warn(
                    "config.volumes",
                    f"{str(raw)!r}: host and container paths must be absolute (rkt resolved a "
                    "relative host path against its working directory): not converted",
                )
                continue
            if len(parts) == 3 and parts[2] != "readOnly":
                self.scope.note(
                    "config.volumes",
                    f"unknown volume parameter {parts[2]!r} ignored for mount {parts[0]} "
                    "(read-write, as in Nomad)",
                )
            volumes.append(
                {
                    "name": f"volume-{i}",
                    "hostPath": parts[0],
                    "mountPath": parts[1],
                    **({"readOnly": True} if parts[2:] == ["readOnly"] else {}),
                }
            )
        if volumes:
            spec["volumes"] = volumes

    def _ports(self, spec: dict[str, Any]) -> dict[str, int]:
        """``spec.ports`` from port_map and the network ports; label -> host port."""
        port_map = {str(k): str(v) for k, v in _port_map(self.task.config.get("port_map")).items()}
        ports: list[Port] = [*self.task.ports, *self.group.ports]
        host_ports = {p.label: p.static for p in ports if p.static is not None}
        if spec.get("net") == ["host"]:
            if port_map:
                self.scope.note("config.port_map", "net = [host]: port_map is ignored, as in Nomad")
            return {k: v for k, v in host_ports.items() if v is not None}
        if port_map and not ports:
            self.scope.note(
                "config.port_map",
                "port_map without network ports: Nomad refused to start this task (E11); the "
                "ports are only reported in status.portMap",
            )
        out: list[dict[str, Any]] = []
        used: dict[str, str] = {}
        for port in ports:
            name = port_map.get(port.label)
            if name is None:
                self.scope.warn(
                    "network.port",
                    f'port "{port.label}" has no port_map entry (Nomad refused such a task, '
                    "E12): not converted",
                )
                continue
            if name in used:
                self.scope.warn(
                    "network.port",
                    f'port "{port.label}" maps to image port {name!r} like "{used[name]}": '
                    "only the first is converted",
                )
                continue
            used[name] = port.label
            entry: dict[str, Any] = {"name": name}
            if port.static is not None:
                entry["hostPort"] = port.static
            else:
                self.scope.warn(
                    "network.port",
                    f'port "{port.label}" is dynamic: no host port is published (give it a '
                    "static port to reach it from the node); its container port is reported "
                    "in status.portMap",
                )
            if name.endswith("-udp"):
                entry["protocol"] = "UDP"
            out.append(entry)
        for label, name in port_map.items():
            if name not in used:
                used[name] = label
                out.append({"name": name, **({"protocol": "UDP"} if name.endswith("-udp") else {})})
        if out:
            spec["ports"] = out
        return {k: v for k, v in host_ports.items() if v is not None}

    def _resources(self, spec: dict[str, Any]) -> None:
        limits: dict[str, Any] = {}
        memory, cpu = self.task.memory, self.task.cpu
        if memory is not None:
            if isinstance(memory, int) and not isinstance(memory, bool) and memory > 0:
                limits["memory"] = f"{memory}Mi"
            else:
                self.scope.warn("resources.memory", f"{memory!r} is not a number of MB: default")
        if cpu is not None:
            if isinstance(cpu, int) and not isinstance(cpu, bool) and cpu > 0:
                per_core = self.options.cpu_mhz_per_core
                if per_core:
                    limits["cpu"] = f"{math.ceil(cpu * 1000 / per_core)}m"
                else:
                    limits["cpu"] = f"{cpu}m"
            else:
                self.scope.warn("resources.cpu", f"{cpu!r} is not a number of MHz: default")
        if limits:
            spec["resources"] = {"limits": limits}

    # ----- environment and interpolation -----------------------------------------------------

    def _nomad_env(self, host_ports: dict[str, int]) -> dict[str, str]:
        memory = self.task.memory if isinstance(self.task.memory, int) else 300
        cpu = self.task.cpu if isinstance(self.task.cpu, int) else 100
        env = {
            "NOMAD_ALLOC_DIR": "/alloc",
            "NOMAD_TASK_DIR": "/local",
            "NOMAD_SECRETS_DIR": "/secrets",
            "NOMAD_JOB_NAME": self.job.name,
            "NOMAD_JOB_ID": self.job.name,
            "NOMAD_GROUP_NAME": self.group.name,
            "NOMAD_TASK_NAME": self.task.name,
            "NOMAD_ALLOC_INDEX": str(self.index),
            "NOMAD_ALLOC_NAME": self.alloc_name,
            "NOMAD_REGION": self.job.region or "global",
            "NOMAD_MEMORY_LIMIT": str(memory),
            "NOMAD_CPU_LIMIT": str(cpu),
        }
        if self.job.datacenters:
            env["NOMAD_DC"] = self.job.datacenters[0]
        for key, value in self._meta().items():
            for name in dict.fromkeys((f"NOMAD_META_{key}", f"NOMAD_META_{key.upper()}")):
                if _ENV_NAME.match(name):
                    env[name] = str(value)
        for label, port in host_ports.items():
            for name in (f"NOMAD_PORT_{label}", f"NOMAD_HOST_PORT_{label}"):
                if _ENV_NAME.match(name):
                    env[name] = str(port)
        return env

    def _env(self, spec: dict[str, Any]) -> None:
        entries: dict[str, dict[str, Any]] = {}
        for name, value in self.nomad_vars.items():
            entries[name] = {"name": name, "value": value}
        if self.options.nomad_env:
            entries["NOMAD_ALLOC_ID"] = {
                "name": "NOMAD_ALLOC_ID",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}},
            }
        for name, value in self.task.env.items():
            if not _ENV_NAME.match(str(name)):
                self.scope.warn("env", f"{name!r} is not a valid variable name (rkt refuses it)")
                continue
            entries[str(name)] = {"name": str(name), "value": self._env_value(str(name), value)}
        if entries:
            spec["env"] = list(entries.values())

    def _env_value(self, name: str, value: Any) -> str:
        if isinstance(value, Expr):
            self.scope.warn(f"env.{name}", f"the expression {value.text} is not evaluated")
            return value.text
        if isinstance(value, bool):
            return "true" if value else "false"

        def replace(ref: str) -> str | None:
            if ref in self.nomad_vars:
                return self.nomad_vars[ref]
            other = self.task.env.get(ref)
            return other if isinstance(other, str) and "${" not in other else None

        return self._interpolate(f"env.{name}", str(value), replace, escape=False)

    def _arg(self, value: str) -> str:
        def replace(ref: str) -> str | None:
            if _ENV_NAME.match(ref) and (ref in self.nomad_vars or ref in self.task.env):
                return f"$({ref})"
            return None

        return self._interpolate("config.args", value, replace, escape=True)

    def _interpolate(
        self, stanza: str, text: str, replace: Callable[[str], str | None], *, escape: bool
    ) -> str:
        """Nomad ``${ref}`` -> ``replace(ref)``; unknown references are kept and reported.
        With ``escape``, literal ``$`` that Kubernetes expansion would read are doubled."""
        out: list[str] = []
        pos = 0
        for match in _INTERP.finditer(text):
            out.append(_escape(text[pos : match.start()]) if escape else text[pos : match.start()])
            pos = match.end()
            if match.group(0) == "$${":
                out.append("$${" if escape else "${")
                continue
            ref = match.group(1).strip()
            new = replace(ref)
            if new is None:
                self.scope.warn(
                    stanza,
                    f"${{{ref}}} cannot be resolved here (node attributes, HCL2 variables and "
                    "unknown names have no value before the task runs): kept as text",
                )
                out.append(match.group(0).replace("$", "$$") if escape else match.group(0))
            else:
                out.append(new)
        out.append(_escape(text[pos:]) if escape else text[pos:])
        return "".join(out)

    # ----- lifecycle ------------------------------------------------------------------------

    def _restart(self, spec: dict[str, Any]) -> None:
        batch = self.job.type in ("batch", "sysbatch")
        policy = "OnFailure" if batch else "Always"
        restart = self.task.restart or self.group.restart
        if restart is not None:
            if restart.attempts == 0 and restart.mode in ("fail", None):
                if batch:
                    policy = "Never"
                else:
                    self.scope.note(
                        "restart",
                        "attempts = 0 on a service job: Nomad rescheduled the failed task; "
                        "here it is restarted on its node (restartPolicy Always)",
                    )
            elif restart.attempts or restart.interval_s or restart.delay_s:
                self.scope.note(
                    "restart",
                    "attempts, interval, delay and mode become the agent's back-off (10 s "
                    "doubling to 5 min, reset after 10 min running); a crash loop shows "
                    "Stalled=True",
                )
        if policy != "Always":
            spec["restartPolicy"] = policy

    def _logs(self, spec: dict[str, Any]) -> None:
        logs = self.task.logs
        if not logs:
            return
        out: dict[str, int] = {}
        for key, field_name, upper in (("max_files", "maxFiles", 100),
                                       ("max_file_size", "maxFileSizeMB", 1024)):  # fmt: skip
            value = logs.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self.scope.warn(f"logs.{key}", f"{value!r} is not a positive number: default")
                continue
            if value > upper:
                self.scope.note(f"logs.{key}", f"{value} is above the agent's maximum {upper}")
                value = upper
            out[field_name] = value
        if out and out != {"maxFiles": 10, "maxFileSizeMB": 10}:
            spec["logs"] = out

    def _kill(self, spec: dict[str, Any]) -> None:
        seconds = self.task.kill_timeout_s
        if seconds is not None:
            value = math.ceil(seconds)
            if value > _MAX_KILL_TIMEOUT:
                self.scope.note("kill_timeout", f"capped at {_MAX_KILL_TIMEOUT} s")
                value = _MAX_KILL_TIMEOUT
            if value != 5:
                spec["killTimeoutSeconds"] = value
        if self.task.kill_signal:
            self.scope.note(
                "kill_signal",
                f"{self.task.kill_signal}: rkt stop sends SIGTERM to the pod, then forces it "
                "(Nomad's rkt driver did not honour kill_signal either)",
            )

    # ----- templates, vault, services ---------------------------------------------------------

    def _secret_name(self, suffix: str) -> str:
        return object_name(self.job.name, self.group.name, self.task.name)[:240] + f"-{suffix}"

    def _templates_and_vault(self, spec: dict[str, Any]) -> None:
        env: list[dict[str, Any]] = spec.setdefault("env", [])
        names = {e["name"] for e in env}
        secret = self._secret_name("env")
        keys: list[str] = []
        for template in self.task.templates:
            if not template.env:
                self.scope.warn(
                    "template",
                    f"template to {template.destination!r} is not rendered: provide the file "
                    "(e.g. in the task directory or a hostPath volume)",
                )
                continue
            found = _TEMPLATE_KEY.findall(template.data or "")
            if not found:
                self.scope.warn(
                    "template",
                    f"env template to {template.destination!r}: its variable names cannot be "
                    "read from the template; not converted",
                )
                continue
            keys += [k for k in found if k not in keys]
        for key in keys:
            if key in names:
                continue
            names.add(key)
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        if keys:
            self.scope.warn(
                "template",
                f"env template values are not rendered: provide Secret {secret!r} with keys "
                f"{', '.join(keys)} (kubectl create secret generic {secret} "
                + " ".join(f"--from-literal={k}=..." for k in keys)
                + "); the task waits for it",
            )
        vault = self.task.vault
        if vault is not None:
            policies = vault.get("policies") or vault.get("Policies") or []
            vault_env = vault.get("env", vault.get("Env", True))
            if vault_env is not False and "VAULT_TOKEN" not in names:
                vault_secret = self._secret_name("vault")
                env.append(
                    {
                        "name": "VAULT_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": vault_secret, "key": "token"}},
                    }
                )
                self.scope.warn(
                    "vault",
                    f"no Vault integration: provide a token for policies {list(policies)} in "
                    f"Secret {vault_secret!r} key 'token'; the task waits for it",
                )
            else:
                self.scope.warn("vault", "no Vault integration: the token is not provided")
        if not env:
            spec.pop("env")

    def _services(self, spec: dict[str, Any]) -> None:
        readiness_done = False
        for svc in self.task.services:
            self.scope.warn("service", _service_message(svc))
            for check in svc.checks:
                if check.type != "script" or not check.command:
                    continue
                if readiness_done:
                    self.scope.warn(
                        "service.check",
                        f"script check {check.name!r}: only the first becomes the readiness probe",
                    )
                    continue
                probe: dict[str, Any] = {"exec": {"command": [check.command, *check.args]}}
                if check.interval_s:
                    probe["periodSeconds"] = max(1, math.ceil(check.interval_s))
                if check.timeout_s:
                    probe["timeoutSeconds"] = max(1, math.ceil(check.timeout_s))
                spec["readinessProbe"] = probe
                readiness_done = True
                self.scope.note(
                    "service.check", f"script check {check.name!r} -> readinessProbe (rkt enter)"
                )
                if check.check_restart_limit:
                    liveness = {
                        **probe,
                        "exec": {"command": [check.command, *check.args]},
                        "failureThreshold": check.check_restart_limit,
                    }
                    if check.check_restart_grace_s:
                        liveness["initialDelaySeconds"] = math.ceil(check.check_restart_grace_s)
                    spec["livenessProbe"] = liveness
                    self.scope.note(
                        "service.check.check_restart",
                        f"check_restart limit {check.check_restart_limit} -> livenessProbe",
                    )


def _escape(literal: str) -> str:
    """Double each ``$`` that Kubernetes-style expansion would read (``$$`` or ``$(``)."""
    out = []
    for i, char in enumerate(literal):
        out.append(char)
        if char == "$" and literal[i + 1 : i + 2] in ("$", "("):
            out.append("$")
    return "".join(out)


def _rule_text(rule: Rule) -> str:
    text = f"{rule.attribute} {rule.operator} {rule.value!r}".replace("  ", " ")
    return text + (f" (weight {rule.weight})" if rule.weight is not None else "")


def iter_warnings(result: Result) -> Iterator[Finding]:
    return (f for f in result.findings if f.level == "warning")
