"""The pure translation of an RktTask into rkt command lines, at parity with Nomad's rkt
driver (nomad-rkt-driver.md §1.1: same flags, same order, same rules).

``build_launch_plan`` takes the validated spec, the node's settings, the task's identity
and directories and its already-resolved environment, and returns a ``LaunchPlan``: the
argument lists of ``rkt trust``, ``rkt prepare`` and ``rkt run-prepared`` plus what the
executor needs around them. No I/O, no clock, no environment: everything comes in as
arguments. Problems that depend on the node (volumes disabled or outside the allowlist)
raise ``SpecError`` with the field named.

Deliberate departures from the Nomad driver, each fixing a known problem (§9):
- ``--set-env`` flags are sorted by name (Nomad iterated a Go map: random order).
- Variables from Secrets go through ``--set-env-file`` (a 0600 file), never the argv.
- Variable names with '-' are refused up front (they made rkt fail, Nomad #2358).
- Volume names derive from the object's UID (Nomad: alloc id + task name with '_'->'-').
- ``--memory=<n>M``: n counts rkt's decimal megabytes (10^6 bytes), rounded up; Nomad put
  its MiB figure in front of rkt's decimal ``M`` and so enforced 4.6 % less than asked.
- ``--cpu=<n>m`` is a Kubernetes CPU quantity in millicores; Nomad handed its MHz figure to
  rkt as millicores (a different unit under the same number).
- The kill timeout cap never yields 0 when the node's maximum is unset (see
  ``kill_timeout``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rkt_operator.errors import SpecError
from rkt_operator.model.fields import ENV_NAME
from rkt_operator.model.logs import LogConfig
from rkt_operator.model.network import DNS_SPECIAL
from rkt_operator.model.quantity import cpu_millicores, memory_megabytes
from rkt_operator.model.resources import DEFAULT_CPU, DEFAULT_MEMORY
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.rkt.types import LaunchPlan, PodStamp, TaskDirs, TaskIdentity
from rkt_operator.settings import Settings

# Container paths of the three task directories (Nomad: NOMAD_ALLOC_DIR & co).
TASK_DIR_MOUNTS = (("alloc", "/alloc"), ("local", "/local"), ("secrets", "/secrets"))
MIN_KILL_TIMEOUT_SECONDS = 1.0  # Nomad GetKillTimeout: desired <= 0 -> 1 s
FALLBACK_MAX_KILL_TIMEOUT_SECONDS = 10.0  # Nomad GetKillTimeout: max <= 0 -> 10 s
_ENV_NAME_RE = re.compile(ENV_NAME)


@dataclass(frozen=True)
class ResolvedVar:
    """One variable of the task's environment after the agent resolved ``valueFrom``.

    ``secret`` marks values that came from a Secret: they are handed to rkt in a file and
    redacted from logs, never placed in an argv.
    """

    name: str
    value: str
    secret: bool = False


def _bool(value: bool) -> str:
    return "true" if value else "false"


def expand_args(args: Iterable[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """Expand ``$(VAR)`` in each argument exactly as Kubernetes does for a container's args:
    a known VAR is replaced by its value, an unknown one is left as ``$(VAR)``, ``$$``
    yields a literal ``$`` (so ``$$(VAR)`` yields ``$(VAR)``), an unterminated ``$(`` and
    any other ``$`` are kept as they are. Values are not expanded again."""
    return tuple(_expand(arg, env) for arg in args)


def _expand(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":  # escaped operator
            out.append("$")
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end == -1:  # unterminated reference: kept literally
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : end]
                out.append(env.get(name, f"$({name})"))
                i = end + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def kill_timeout(desired_seconds: float, max_seconds: float) -> float:
    """Nomad's GetKillTimeout: a desired value <= 0 means 1 s, a maximum <= 0 means 10 s,
    and the result is the smaller of the two. (Nomad returned the raw maximum in the last
    case, which could be 0 for an unset maximum; here the 10 s fallback applies.)"""
    desired = desired_seconds if desired_seconds > 0 else MIN_KILL_TIMEOUT_SECONDS
    maximum = max_seconds if max_seconds > 0 else FALLBACK_MAX_KILL_TIMEOUT_SECONDS
    return float(min(desired, maximum))


def _go_quote_ascii(text: str) -> str:
    """Go's ``%+q`` for one string: double quotes, escapes, non-ASCII as \\u/\\U."""
    named = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
    named |= {"\v": r"\v", '"': r"\"", "\\": r"\\"}
    out = []
    for char in text:
        code = ord(char)
        if char in named:
            out.append(named[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _global_flags(spec: RktTaskSpec) -> list[str]:
    flags: list[str] = []
    if spec.insecure_options:  # an explicit list wins, even with a trust prefix
        flags.append("--insecure-options=" + ",".join(spec.insecure_options))
    elif not spec.trust_prefix:  # no trust prefix: signature checks off entirely
        flags.append("--insecure-options=all")
    flags.append(f"--debug={_bool(spec.debug)}")
    return flags


def _path_allowed(path: str, prefixes: Sequence[str]) -> bool:
    normalised = posixpath.normpath(path)
    for prefix in prefixes:
        root = posixpath.normpath(prefix)
        if root == "/" or normalised == root or normalised.startswith(root + "/"):
            return True
    return False


def _volume_flags(
    spec: RktTaskSpec, settings: Settings, identity: TaskIdentity, dirs: TaskDirs
) -> list[str]:
    prefix = identity.volume_prefix
    flags: list[str] = []
    for suffix, target in TASK_DIR_MOUNTS:
        name = f"{prefix}-{suffix}"
        flags += [
            f"--volume={name},kind=host,source={getattr(dirs, suffix)}",
            f"--mount=volume={name},target={target}",
        ]
    if spec.volumes and not settings.volumes_enabled:
        entries = [
            f"{v.host_path}:{v.mount_path}" + (":readOnly" if v.read_only else "")
            for v in spec.volumes
        ]
        quoted = "[" + " ".join(_go_quote_ascii(e) for e in entries) + "]"
        # Nomad's text (E8), with entries in its host:container[:readOnly] syntax.
        raise SpecError(
            f"rkt.volumes.enabled is false; cannot use rkt volumes: {quoted}", field="spec.volumes"
        )
    allowed = settings.volumes_allowed_host_paths
    for index, volume in enumerate(spec.volumes):
        if allowed and not _path_allowed(volume.host_path, allowed):
            raise SpecError(
                f"volume {volume.name!r}: host path {volume.host_path} is not under a path this "
                f"node allows for volumes ({', '.join(allowed)})",
                field=f"spec.volumes[{index}].hostPath",
            )
        name = f"{prefix}-{index}"
        flags += [
            f"--volume={name},kind=host,source={volume.host_path},"
            f"readOnly={_bool(volume.read_only)}",
            f"--mount=volume={name},target={volume.mount_path}",
        ]
    return flags


def _merge_env(env: Iterable[ResolvedVar]) -> dict[str, ResolvedVar]:
    merged: dict[str, ResolvedVar] = {}
    for var in env:  # a later definition of a name wins, as in a Pod
        if not _ENV_NAME_RE.fullmatch(var.name):
            raise SpecError(
                f"invalid environment variable name {var.name!r}: use letters, digits, '_' "
                "and '.', not starting with a digit ('-' makes rkt fail, Nomad issue #2358)",
                field="spec.env",
            )
        if var.secret and ("\n" in var.value or "\r" in var.value):
            raise SpecError(
                f"variable {var.name} comes from a Secret and contains a line break, which "
                "rkt's --set-env-file cannot carry",
                field="spec.env",
            )
        merged[var.name] = var
    return merged


def _port_flags(spec: RktTaskSpec) -> list[str]:
    flags = []
    for port in spec.ports:
        if port.host_port is None:
            continue
        host = f"{port.host_ip}:{port.host_port}" if port.host_ip else str(port.host_port)
        flags.append(f"--port={port.name}:{host}")
    return flags


def _dns_flags(spec: RktTaskSpec) -> list[str]:
    servers = spec.dns_servers
    if len(servers) == 1 and servers[0] in DNS_SPECIAL:
        return [f"--dns={servers[0]}"]
    # The model already refused anything but IP addresses here (Nomad's E10, see DnsServer).
    return [f"--dns={server}" for server in servers]


def build_launch_plan(
    spec: RktTaskSpec,
    *,
    settings: Settings,
    identity: TaskIdentity,
    dirs: TaskDirs,
    env: Sequence[ResolvedVar],
    stamp: PodStamp | None = None,
) -> LaunchPlan:
    """Translate one task into the commands that prepare and run its pod.

    ``env`` is the task's complete environment, already resolved by the agent; ``stamp``
    the restart count and back-off step the pod is started with (none: a first start). Raises
    ``SpecError`` for what this node refuses (volumes) or what rkt cannot take.
    """
    global_flags = _global_flags(spec)
    stamp = stamp or PodStamp()
    trust = None
    if spec.trust_prefix:
        trust = (
            "trust",
            "--skip-fingerprint-review=true",
            f"--prefix={spec.trust_prefix}",
            f"--debug={_bool(spec.debug)}",
        )

    merged = _merge_env(env)
    plain = sorted((v for v in merged.values() if not v.secret), key=lambda v: v.name)
    secret = sorted((v for v in merged.values() if v.secret), key=lambda v: v.name)

    prepare = [*global_flags, "prepare"]
    if spec.no_overlay:
        prepare.append("--no-overlay=true")
    prepare += _volume_flags(spec, settings, identity, dirs)
    prepare += [f"--set-env={v.name}={v.value}" for v in plain]
    if secret:
        prepare.append(f"--set-env-file={dirs.secret_env_file}")
    prepare.append(spec.image)
    if spec.command:
        prepare.append(f"--exec={spec.command}")
    limits = spec.resources.limits if spec.resources and spec.resources.limits else None
    memory = limits.memory if limits and limits.memory is not None else DEFAULT_MEMORY
    cpu = limits.cpu if limits and limits.cpu is not None else DEFAULT_CPU
    prepare += [f"--memory={memory_megabytes(memory)}M", f"--cpu={cpu_millicores(cpu)}m"]
    host_network = spec.net == ["host"]
    if not host_network:  # with the host's network rkt forwards nothing (Nomad #3207)
        prepare += _port_flags(spec)
    if spec.user:
        prepare.append(f"--user={spec.user}")
    if spec.group:
        prepare.append(f"--group={spec.group}")
    # Identity stamp, so the agent can find its pods again from `rkt list` alone.
    prepare += [f"--user-annotation={k}={v}" for k, v in identity.annotations().items()]
    # The counts it is started with, so that a restart is never lost with an agent crash.
    prepare += [f"--user-annotation={k}={v}" for k, v in stamp.annotations().items()]
    args = expand_args(spec.args, {name: var.value for name, var in merged.items()})
    if args:
        prepare += ["--", *args]

    run_prepared = [*global_flags, "run-prepared", *_dns_flags(spec)]
    run_prepared += [f"--dns-search={domain}" for domain in spec.dns_search_domains]
    if spec.net:
        run_prepared.append("--net=" + ",".join(spec.net))

    for item in (*prepare, *run_prepared, *(trust or ()), *(v.value for v in secret)):
        if "\x00" in item:
            raise SpecError("a value contains a NUL character, which rkt cannot be given")

    discover = spec.net not in (["host"], ["none"])
    return LaunchPlan(
        identity=identity,
        dirs=dirs,
        trust=trust,
        prepare=tuple(prepare),
        run_prepared=tuple(run_prepared),
        secret_env=tuple((v.name, v.value) for v in secret),
        discover_network=discover,
        # Like Nomad with a non-empty port_map: without the pod's address the ports are useless.
        network_required=discover and bool(spec.ports),
        port_names=tuple(p.name for p in spec.ports) if discover else (),
        kill_timeout_seconds=spec.kill_timeout_seconds,
        redact=frozenset(v.value for v in secret if v.value),
        log_max_files=(spec.logs or LogConfig()).max_files,
        log_max_file_bytes=(spec.logs or LogConfig()).max_file_bytes,
    )
