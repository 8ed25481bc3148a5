"""Health probes of an RktTask (``spec.readinessProbe``, ``spec.livenessProbe``): the
Kubernetes Probe with its ``exec`` handler only, run inside the pod through ``rkt enter``
(what Nomad's rkt driver offered Consul script checks).

Semantics, as the kubelet's (the agent applies them; see ``rkt_operator.reconcile.prober``):

- Each probe runs ``exec.command`` in the pod's app every ``periodSeconds``, the first time
  ``initialDelaySeconds`` after the pod started; exit code 0 is a success, anything else a
  failure, and so is a run outliving ``timeoutSeconds``. ``successThreshold`` consecutive
  successes make the outcome a success, ``failureThreshold`` consecutive failures a failure.
- Readiness: the task is ``Ready=True`` only once its readiness probe succeeded. While it
  has not (yet), the task stays ``phase: Running`` with ``Ready=False`` (reason
  ``ReadinessPending`` before the first verdict, ``ProbeFailed`` after), ``Reconciling`` and
  ``Stalled`` False: the agent has nothing left to do, the app is not ready. kstatus reads
  that as InProgress (its ``Ready`` rule), the chart's Argo CD check as Progressing, and
  ``kubectl wait --for=condition=Ready`` keeps waiting, as for an unready Pod.
- Liveness: a failed outcome stops the pod (within ``killTimeoutSeconds``) and counts as a
  failed exit whatever its exit code: ``restartPolicy`` Always or OnFailure restart it with
  back-off (``Reconciling=True``, ``CrashLoopBackOff``), Never fails the task
  (``Stalled=True``, reason ``LivenessProbeFailed``). An ``Unhealthy`` event says why.
- Changing only the probes of a task does not restart its pod.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, field_validator, model_validator

from rkt_operator.model import fields as f
from rkt_operator.model.fields import KubeModel as _Model

MAX_DELAY_SECONDS = 86400  # a day: initialDelaySeconds and periodSeconds
MAX_TIMEOUT_SECONDS = 3600
MAX_THRESHOLD = 1000

_Word = Annotated[str, f.Text(f.NO_NUL, "a string without NUL characters", 4096, min_length=0)]


class ExecAction(_Model):
    """A command run inside the pod's app, as ``rkt enter <uuid> <command>...`` runs it."""

    command: list[_Word] = Field(
        min_length=1,
        max_length=256,
        description="The executable and its arguments, run in the app's root filesystem and "
        "environment (not through a shell: use [/bin/sh, -c, '...'] for one). Exit code 0 "
        "means healthy. The last bytes of its output may appear in events and conditions.",
        json_schema_extra={
            "x-kubernetes-list-type": "atomic",
            "x-kubernetes-validations": [
                f.cel(
                    "size(self[0]) > 0",
                    "spec.readinessProbe/livenessProbe.exec.command[0] (the executable) "
                    "must not be empty",
                )
            ],
        },
    )

    @field_validator("command")
    @classmethod
    def _executable(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("command[0] (the executable) must not be empty")
        return value


class Probe(_Model):
    """A health check run inside the pod (Kubernetes Probe, exec handler only)."""

    exec_: ExecAction = Field(
        alias="exec",
        description="The command to run. The only handler: httpGet, tcpSocket and grpc are "
        "not supported.",
    )
    initial_delay_seconds: int = Field(
        0,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="Seconds after the pod started before the first run.",
    )
    period_seconds: int = Field(
        10,
        ge=1,
        le=MAX_DELAY_SECONDS,
        description="Seconds between two runs. The agent checks which probes are due once a "
        "second, so a run may start up to a second late.",
    )
    timeout_seconds: int = Field(
        1,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds after which a run is killed and counted as a failure (the time "
        "includes starting rkt enter).",
    )
    success_threshold: int = Field(
        1,
        ge=1,
        le=MAX_THRESHOLD,
        description="Consecutive successes after a failure for the probe to count as "
        "succeeded. Must be 1 for livenessProbe.",
    )
    failure_threshold: int = Field(
        3,
        ge=1,
        le=MAX_THRESHOLD,
        description="Consecutive failures for the probe to count as failed.",
    )


class LivenessProbe(Probe):
    """A health check whose failure stops the pod (then restartPolicy applies)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                f.cel(
                    "!has(self.successThreshold) || self.successThreshold == 1",
                    "spec.livenessProbe.successThreshold must be 1",
                    field_path=".successThreshold",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _one_success(self) -> LivenessProbe:
        if self.success_threshold != 1:
            raise ValueError("successThreshold must be 1 for a liveness probe")
        return self
