"""Node-local admin commands on a task's running pod, the Kubernetes form of the Nomad
driver's Exec, Signal and Stats: ``exec`` (``rkt enter``), ``signal`` (to the pod's app
processes), ``stats`` (CPU and memory of the pod's process tree) and ``pods`` (the task's
pods as rkt reports them).

They run on the node (``kubectl exec`` into the node's agent pod, then ``rkt-operator exec
NAMESPACE/NAME -- CMD...``) and need no Kubernetes API: the task's pod is found through
the executor's ``list_pods()`` by the identity annotations stamped on every pod. The newest
running pod of the task is the one acted on. ``uid`` (``--uid``, which ``kubectl rkt`` always
passes: the uid of the object it read with the caller's credentials) confines every command
to that one object.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rkt_operator import errors
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.types import ClientInput, PodObservation


def parse_signal(text: str) -> signal.Signals:
    """``HUP``, ``SIGHUP``, ``hup`` or ``1`` -> ``signal.SIGHUP``; ``ValueError`` otherwise."""
    word = text.strip()
    if word.isdigit():
        try:
            return signal.Signals(int(word))
        except ValueError:
            raise ValueError(f"unknown signal number {word}") from None
    name = word.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None


def _of_object(pods: Sequence[PodObservation], uid: str | None) -> list[PodObservation]:
    """The pods of object ``uid`` (all of them when None): a caller that names the uid it
    read from the API server never acts on another object's pod of the same name."""
    return [p for p in pods if uid is None or (p.identity and p.identity.uid == uid)]


async def running_pod(
    executor: Executor, namespace: str, name: str, *, uid: str | None = None
) -> PodObservation:
    """The newest running pod of task ``namespace/name`` (of object ``uid`` only, when
    given) on this node; ``PodNotFound``."""
    mine = _of_object(await executor.pods_named(namespace, name), uid)
    running = [p for p in mine if p.running]
    if not running:
        of = f" (uid {uid})" if uid else ""
        raise errors.PodNotFound(f"no running pod of task {namespace}/{name}{of} on this node")
    return running[0]


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


async def task_pods(
    executor: Executor, namespace: str, name: str, *, uid: str | None = None
) -> list[dict[str, Any]]:
    """Every pod of the task rkt knows on this node, newest first, as JSON-ready mappings
    (what ``kubectl rkt describe`` shows as "the pod as rkt sees it")."""
    return [
        {
            "uuid": pod.uuid,
            "state": pod.state,
            "uid": pod.identity.uid if pod.identity else None,
            "generation": pod.generation,
            "exitCode": pod.exit_code,
            "stopSignal": pod.stop_signal,
            "ip": pod.ip,
            "ports": dict(pod.port_map),
            "createdAt": _when(pod.created_at),
            "startedAt": _when(pod.started_at),
            "finishedAt": _when(pod.finished_at),
        }
        for pod in _of_object(await executor.pods_named(namespace, name), uid)
    ]


def exec_attached(
    executor: Executor,
    namespace: str,
    name: str,
    command: Sequence[str],
    *,
    app: str | None = None,
    tty: bool = False,
    uid: str | None = None,
    client_input: ClientInput = "inherit",
) -> int:
    """Run ``command`` in the task's newest running pod, attached to this process as
    Nomad's streaming exec was: stdin forwarded, stdout and stderr kept apart, or on a
    pseudo-terminal with ``tty``. Blocks until the command ends; its exit code. It also
    ends, with what it started in the pod, when the client goes: its terminal hangs up,
    SIGHUP/SIGTERM, or stdin shows it (``client_input``: ``ClientInput``)."""
    pod = asyncio.run(running_pod(executor, namespace, name, uid=uid))
    return executor.rkt.enter_attached(
        pod.uuid, command, app=app, tty=tty, client_input=client_input
    )


async def send_signal(
    executor: Executor, namespace: str, name: str, signum: int, *, uid: str | None = None
) -> str:
    """Deliver ``signum`` to the app processes of the task's pod; the pod's UUID."""
    pod = await running_pod(executor, namespace, name, uid=uid)
    await executor.signal(pod.uuid, signum)
    return pod.uuid


async def task_stats(
    executor: Executor, namespace: str, name: str, *, uid: str | None = None
) -> dict[str, Any]:
    """One sample of the task's pod, as a JSON-ready mapping."""
    pod = await running_pod(executor, namespace, name, uid=uid)
    sample = await executor.stats(pod.uuid)
    if sample is None:
        raise errors.PodWrongState(f"pod {pod.uuid} of task {namespace}/{name} stopped running")
    return {
        "namespace": namespace,
        "name": name,
        "uuid": pod.uuid,
        "pid": sample.pid,
        "processes": sample.processes,
        "cpuSeconds": sample.cpu_seconds,
        "rssBytes": sample.rss_bytes,
        "sampledAt": sample.sampled_at.isoformat(),
    }
