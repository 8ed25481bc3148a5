"""Value types shared by the pure translation (``rkt.argv``), the adapter (``rkt.cli``) and the
executor. Plain frozen dataclasses: no I/O, no clock, no environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from rkt_operator.model import api

# User annotations stamped on every pod (``--user-annotation``), so that after an agent
# restart the executor re-discovers its pods from ``rkt list``/``rkt status`` alone.
ANNOTATION_PREFIX = api.PREFIX
ANN_NAMESPACE = ANNOTATION_PREFIX + "namespace"
ANN_NAME = ANNOTATION_PREFIX + "name"
ANN_UID = ANNOTATION_PREFIX + "uid"
ANN_GENERATION = ANNOTATION_PREFIX + "generation"
# The restart count and back-off step a pod was started with: the task's counts survive an
# agent killed before it recorded the pod in the status (``reconcile.plan`` reads them back).
ANN_RESTARTS = ANNOTATION_PREFIX + "restarts"
ANN_BACKOFF_STEP = ANNOTATION_PREFIX + "backoff-step"


@dataclass(frozen=True)
class TaskIdentity:
    """Who a pod belongs to: the RktTask object and the generation of its spec."""

    namespace: str
    name: str
    uid: str
    generation: int

    def annotations(self) -> dict[str, str]:
        """The user annotations stamped on the pod's app, in a stable order."""
        return {
            ANN_NAMESPACE: self.namespace,
            ANN_NAME: self.name,
            ANN_UID: self.uid,
            ANN_GENERATION: str(self.generation),
        }

    @property
    def volume_prefix(self) -> str:
        """Prefix of the pod's volume names: the object's UID, which is a valid AC Name
        (lowercase hex and single dashes) and unique per object, so two tasks never share
        a volume name (Nomad used ``<allocID>-<task>``)."""
        return self.uid.lower()


@dataclass(frozen=True)
class PodStamp:
    """The counts a pod was started with: the task's restart count and back-off step."""

    restarts: int = 0
    backoff_step: int = 0

    def annotations(self) -> dict[str, str]:
        return {ANN_RESTARTS: str(self.restarts), ANN_BACKOFF_STEP: str(self.backoff_step)}

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> PodStamp | None:
        """The stamp read back from a pod's annotations (rkt output: untrusted), or None
        when absent or not two small non-negative integers."""
        values = (annotations.get(ANN_RESTARTS), annotations.get(ANN_BACKOFF_STEP))
        if any(v is None or not v.isascii() or not v.isdigit() or len(v) > 9 for v in values):
            return None
        restarts, step = (int(v or 0) for v in values)
        return cls(restarts=restarts, backoff_step=step)


@dataclass(frozen=True)
class TaskDirs:
    """The host directories of one task, bind-mounted at /alloc, /local and /secrets."""

    root: Path
    alloc: Path
    local: Path
    secrets: Path

    @classmethod
    def for_task(cls, task_root: Path, identity: TaskIdentity) -> TaskDirs:
        root = task_root / identity.namespace / f"{identity.name}-{identity.uid}"
        return cls(root=root, alloc=root / "alloc", local=root / "local", secrets=root / "secrets")

    @property
    def secret_env_file(self) -> Path:
        """Where secret-derived variables are written (mode 0600) for ``--set-env-file``, so
        their values never appear in an argv, a log line or ``ps`` output. Not mounted."""
        return self.root / "secret.env"


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start one pod, decided before anything runs.

    Argument lists exclude the rkt binary and the node-level global flags ``--dir`` /
    ``--local-config``, which the adapter adds to every command. ``run_prepared`` excludes
    the pod UUID, which only ``rkt prepare`` reveals; the executor appends it.
    """

    identity: TaskIdentity
    dirs: TaskDirs
    trust: tuple[str, ...] | None
    prepare: tuple[str, ...]
    run_prepared: tuple[str, ...]
    # Variables that come from Secrets: written to ``dirs.secret_env_file`` before prepare.
    secret_env: tuple[tuple[str, str], ...] = ()
    # Network discovery (Nomad 3.7): skipped for ``net: [host]`` and ``net: [none]``.
    discover_network: bool = True
    # Port mapping requested: a discovery failure is then fatal (Nomad E18).
    network_required: bool = False
    # Image port names whose container port goes into status.portMap.
    port_names: tuple[str, ...] = ()
    # The task's desired stop grace (spec.killTimeoutSeconds); ``Executor.stop`` caps it
    # with the node's rule (``argv.kill_timeout``), the one place the rule is applied.
    kill_timeout_seconds: float = 5.0
    # Values that must never be logged (secret env values); the adapter redacts them.
    redact: frozenset[str] = field(default_factory=frozenset)
    # Rotation of the pod's output files (spec.logs; Nomad's defaults 10 x 10 MiB).
    log_max_files: int = 10
    log_max_file_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class PodObservation:
    """One pod as the executor reports it: what ``rkt list``/``rkt status`` (and the
    supervisor's exit file) say, with the task identity read from its annotations. The one
    pod value from the executor to the decision (``reconcile.plan``)."""

    uuid: str
    identity: TaskIdentity | None
    state: str
    running: bool
    finished: bool
    exit_code: int | None
    ip: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    port_map: Mapping[str, int] = field(default_factory=dict)
    # The signal the agent stopped the pod with (SIGTERM, or SIGKILL when forced), when the
    # agent stopped it; None when the app ended by itself.
    stop_signal: str | None = None
    # The restart count and back-off step stamped on the pod (None: not stamped).
    stamp: PodStamp | None = None

    @property
    def generation(self) -> int:
        """The task generation the pod was started for (-1 when not stamped)."""
        return self.identity.generation if self.identity else -1

    @property
    def live(self) -> bool:
        """Running, or prepared and waiting to be launched: a pod that counts as "the" pod."""
        return self.running or (not self.finished and self.state == "prepared")

    @property
    def transient(self) -> bool:
        """Neither live nor finished (``embryo``, ``preparing``, ``deleting``...): debris of
        an interrupted prepare; it can never become the task's pod."""
        return not self.live and not self.finished


# What an attached ``rkt enter`` (``rkt-operator exec``) makes of its caller's standard input:
# "inherit" passes it on as it is; "held": the client holds it open, unwritten, so its end is
# the client's, and the command gets none; "frames": it carries the client's input in frames
# (``kubectl rkt exec -i``) and an end-of-input frame, so that its own end is the client's.
ClientInput = Literal["inherit", "held", "frames"]
