"""The ``RktTask.status`` API: what the node agent reports about the task's rkt pod.

These models define the status part of the CRD schema and let the agent validate the
status it is about to write (``RktTaskStatus.model_validate(patch)``). Conditions follow
``metav1.Condition`` and the kstatus convention (``Ready``, ``Reconciling``, ``Stalled``);
deciding their values is the agent's business, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator

from rkt_operator.model import fields as f
from rkt_operator.model.fields import KubeModel

Phase = Literal["Pending", "Preparing", "Running", "Succeeded", "Failed", "Terminating", "Unknown"]
PHASES: tuple[Phase, ...] = (
    "Pending", "Preparing", "Running", "Succeeded", "Failed", "Terminating", "Unknown",
)  # fmt: skip
ConditionStatus = Literal["True", "False", "Unknown"]

# The kstatus-compatible condition types (kopf-and-gitops.md §5).
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

_Port = Annotated[int, Field(ge=1, le=65535)]


class Condition(KubeModel):
    """One observation of the task's state, in the shape of metav1.Condition."""

    type: Annotated[str, f.Text(f.CONDITION_TYPE, "a condition type (CamelCase)", 316)] = Field(
        description="Condition type: Ready, Reconciling or Stalled (the agent), Scheduled "
        "(the binder, for tasks placed without a nodeName)."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was set for."
    )
    last_transition_time: AwareDatetime = Field(
        strict=False,  # parsed from RFC 3339 text
        description="When status last changed (RFC 3339); unchanged while status stays the same.",
    )
    reason: Annotated[str, f.Text(f.CONDITION_REASON, "a CamelCase reason", 1024)] = Field(
        description="Machine-readable CamelCase reason for the last transition."
    )
    message: Annotated[str, f.Text(None, "", 32768, min_length=0)] = Field(
        description="Human-readable details (may be empty)."
    )


class PortStatus(KubeModel):
    """A published port of the pod: container port from the image, host port from the spec."""

    name: f.PortName = Field(description="Port name from the image manifest (spec.ports[].name).")
    container_port: _Port | None = Field(
        None, description="Port number inside the pod, read from the image manifest."
    )
    host_port: _Port | None = Field(None, description="Host port forwarded to it, if any.")
    protocol: Literal["TCP", "UDP"] = Field("TCP", description="TCP or UDP.")
    host_ip: Annotated[str, f.Text(None, "", 45)] | None = Field(
        None, alias="hostIP", description="Host address the host port is bound to, if not all."
    )


class StartFailure(KubeModel):
    """The starts of the current generation that failed in a row, for a cause that can heal
    (the agent retries them with the restart back-off)."""

    reason: Annotated[str, f.Text(f.CONDITION_REASON, "a CamelCase reason", 1024)] = Field(
        description="Why the last start failed (PrepareFailed, RktTimeout, DependencyMissing...)."
    )
    message: Annotated[str, f.Text(None, "", 1024, min_length=0)] = Field(
        "", description="What the last failure said (rkt's words, secret values redacted)."
    )
    attempts: int = Field(ge=1, description="Failed starts in a row.")
    since: AwareDatetime = Field(strict=False, description="When the first of them failed.")
    last: AwareDatetime = Field(strict=False, description="When the latest failed.")
    restart: bool | None = Field(
        None,
        description="The failing start replaces an exited pod (it counts as a restart once "
        "it succeeds).",
    )


class Backoff(KubeModel):
    """The restart back-off the task is in: its pod exited and is started again at
    ``restartAt``. The agent decides from this field, not from a condition's reason."""

    step: int = Field(
        ge=0,
        description="Back-off step of this wait (the delay is restartBackoffSeconds * 2^step, "
        "capped); the restarted pod is stamped with step + 1.",
    )
    restart_at: AwareDatetime = Field(
        strict=False, description="When the exited pod is started again (RFC 3339)."
    )


class RktTaskStatus(KubeModel):
    """Observed state of the task's rkt pod, written by the agent of spec.nodeName."""

    phase: Phase | None = Field(
        None,
        description="Summary of the pod's life: Pending, Preparing, Running, Succeeded, "
        "Failed, Terminating or Unknown. Conditions carry the details.",
    )
    uuid: Annotated[str, f.Text(r"^[0-9a-fA-F-]+$", "an rkt pod UUID", 64)] | None = Field(
        None, description="UUID of the current rkt pod."
    )
    ip: Annotated[str, f.Text(None, "", 45)] | None = Field(
        None, description="IP address of the pod on its first usable network (none with host)."
    )
    port_map: dict[str, _Port] = Field(
        default_factory=dict,
        description="Image port name -> container port, from the pod's manifest (Nomad's "
        "driver port map).",
        json_schema_extra={"maxProperties": 64},
    )
    ports: list[PortStatus] = Field(
        default_factory=list,
        max_length=64,
        description="Published ports with their container and host ports.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    port_summary: Annotated[str, f.Text(None, "", 1024, min_length=0)] | None = Field(
        None,
        description="One-line summary of ports for kubectl get -o wide, e.g. "
        "'client:8080->2379/TCP'.",
    )
    exit_code: int | None = Field(
        None, ge=-(2**31), le=2**31 - 1, description="Exit code of the app's last run."
    )
    stop_signal: Literal["SIGTERM", "SIGKILL"] | None = Field(
        None,
        description="Set when the agent stopped the last pod (liveness probe, replacement): "
        "SIGTERM for rkt stop, SIGKILL when rkt stop --force was needed after "
        "killTimeoutSeconds. rkt reports an app stopped with SIGTERM as exit code 0; this "
        "says it did not finish by itself.",
    )
    restarts: int = Field(0, ge=0, description="How many times the agent restarted the pod.")
    restart_events_posted: int | None = Field(
        None,
        ge=0,
        description="How many of the restarts have had their Restarting event posted: a "
        "restart whose event was lost (agent killed, API down) is announced by the next pass. "
        "Absent: every restart counted so far has had its event.",
    )
    backoff: Backoff | None = Field(
        None,
        description="Set while the pod waits to be restarted after an exit (CrashLoopBackOff).",
    )
    start_failure: StartFailure | None = Field(
        None,
        description="Set while starts keep failing for a cause that can heal; cleared by "
        "the first start that succeeds.",
    )
    started_at: AwareDatetime | None = Field(
        None,
        strict=False,
        description="When the current pod started (rkt's start time; when rkt did not show "
        "it yet, the time the agent first saw the pod running).",
    )
    finished_at: AwareDatetime | None = Field(
        None, strict=False, description="When the last pod exited."
    )
    node_name: Annotated[str, f.Text(f.DNS1123_SUBDOMAIN, "a node name", 253)] | None = Field(
        None, description="Node whose agent wrote this status."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation of the spec this status describes."
    )
    message: Annotated[str, f.Text(None, "", 32768, min_length=0)] | None = Field(
        None, description="Human-readable summary of the last event or error."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Reconciling and Stalled conditions (kstatus conventions), and "
        "Scheduled when the binder placed the task.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    @field_validator("conditions")
    @classmethod
    def _unique_types(cls, value: list[Condition]) -> list[Condition]:
        types = [c.type for c in value]
        if len(types) != len(set(types)):
            raise ValueError(f"conditions: duplicate types in {types}")
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[PortStatus]) -> list[PortStatus]:
        names = [p.name for p in value]
        if len(names) != len(set(names)):
            raise ValueError(f"ports: duplicate names in {names}")
        return value


def port_summary(ports: Iterable[PortStatus]) -> str:
    """The ``portSummary`` text: ``name:hostPort->containerPort/PROTO``, comma-separated;
    ``hostIP:hostPort`` when bound to one address; parts left out when unknown."""
    items: list[str] = []
    for port in ports:
        text = port.name
        if port.host_port is not None:
            host = f"{port.host_ip}:{port.host_port}" if port.host_ip else str(port.host_port)
            text += f":{host}->"
        else:
            text += ":"
        text += f"{port.container_port if port.container_port is not None else '?'}"
        items.append(f"{text}/{port.protocol}")
    return ",".join(items)
