"""The exception hierarchy of rkt-operator.

Every error carries a stable CamelCase ``reason`` that surfaces as a condition reason and
an event reason, and says whether retrying can help (``retryable``). Only
``rkt_operator.handlers`` maps these to kopf's Temporary/Permanent errors; this module
imports nothing from kopf, the Kubernetes client or subprocess.
"""

from __future__ import annotations

from collections.abc import Sequence


class RktTaskError(Exception):
    """Base class. ``reason`` is stable and user-visible; ``retryable`` drives requeueing."""

    reason: str = "Error"
    retryable: bool = True


class SpecError(RktTaskError):
    """The task's spec is invalid or unsupported on this node; retrying cannot help.

    ``field`` is the dotted path of the offending field (``spec.dnsServers[1]``) when known.
    """

    reason = "InvalidSpec"
    retryable = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class DependencyError(RktTaskError):
    """Something the task refers to (a Secret, a ConfigMap key) is missing; retry later."""

    reason = "DependencyMissing"
    retryable = True


class RktError(RktTaskError):
    """An rkt command failed. Carries the argv (secret values redacted), exit code and output.

    Subclasses are produced by one classifier (``rkt_operator.rkt.parse.classify``) from
    the exit code and stderr, so callers can react to specific failure modes.
    """

    reason = "RktFailed"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class RktUnavailable(RktError):
    """The rkt binary is missing or cannot be executed."""

    reason = "RktUnavailable"


class RktTimeout(RktError):
    """An rkt command did not finish within its deadline (it was killed)."""

    reason = "RktTimeout"


class PodNotFound(RktError):
    """No pod matches the UUID (``no matches found``): treated as success by idempotent ops."""

    reason = "PodNotFound"
    retryable = False


class AmbiguousUUID(RktError):
    """The UUID prefix matches several pods (``ambiguous uuid, N matches``)."""

    reason = "AmbiguousUUID"
    retryable = False


class PodWrongState(RktError):
    """The pod is not in a state the command accepts (``is not prepared``, ``is not running``,
    ``is currently running``...)."""

    reason = "PodWrongState"
    retryable = True


class PodStarting(PodWrongState):
    """``rkt stop`` of a pod that shows ``running`` before stage1 has written its pid: rkt's
    stop entrypoint fails (``error reading pid``) and does not retry; the caller may."""

    reason = "PodStarting"


class RktOutputError(RktError):
    """rkt exited 0 but its output could not be parsed (bad JSON, no UUID line)."""

    reason = "RktBadOutput"
    retryable = True


class PrepareError(RktError):
    """``rkt prepare`` rejected the pod (image not in the store, a lock, a bad volume...).

    Retryable, as a kubelet retries a container it cannot create: rkt's answer depends on
    the node (its store, its locks, its files) as much as on the spec, so the agent retries
    with the restart back-off and reports Stalled after the task's progress deadline.
    """

    reason = "PrepareFailed"
    retryable = True


class TrustError(RktError):
    """``rkt trust`` failed (Nomad E7): retried like a failed prepare (a key server may be
    unreachable for a while)."""

    reason = "TrustFailed"
    retryable = True


class NetworkDiscoveryError(RktTaskError):
    """The pod's network could not be determined before the deadline."""

    reason = "NetworkUnknown"
    retryable = True


class NetworkRequiredError(NetworkDiscoveryError):
    """Discovery failed while the task maps ports (Nomad E18): terminal for the current
    generation, as the driver's start error was. The pod is stopped and removed before this
    is raised, so nothing is left behind and no second ``rkt prepare`` follows."""

    retryable = False


class EventNotPosted(Exception):
    """An event the agent must post could not be (the API is unreachable or refused it);
    the status keeps it owed and the next pass tries again. Not a problem of the task."""
