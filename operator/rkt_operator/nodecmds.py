"""Node-local admin commands on a task's running pod, the Kubernetes form of the Nomad
driver's Exec, Signal and Stats: ``exec`` (``rkt enter``), ``signal`` (to the pod's app
processes) and ``stats`` (CPU and memory of the pod's process tree).

They run on the node (``kubectl exec`` into the node's agent pod, then ``rkt-operator exec
NAMESPACE/NAME -- CMD...``) and need no Kubernetes API: the task's pod is found through
the executor's ``list_pods()`` by the identity annotations stamped on every pod. The newest
running pod of the task is the one acted on.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import Any

from rkt_operator import errors
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.types import PodObservation


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


async def running_pod(executor: Executor, namespace: str, name: str) -> PodObservation:
    """The newest running pod of task ``namespace/name`` on this node; ``PodNotFound``."""
    running = [p for p in await executor.pods_named(namespace, name) if p.running]
    if not running:
        raise errors.PodNotFound(f"no running pod of task {namespace}/{name} on this node")
    return running[0]


def exec_attached(
    executor: Executor,
    namespace: str,
    name: str,
    command: Sequence[str],
    *,
    app: str | None = None,
    tty: bool = False,
) -> int:
    """Run ``command`` in the task's newest running pod, attached to this process as
    Nomad's streaming exec was: stdin forwarded, stdout and stderr kept apart, or on a
    pseudo-terminal with ``tty``. Blocks until the command ends; its exit code."""
    pod = asyncio.run(running_pod(executor, namespace, name))
    return executor.rkt.enter_attached(pod.uuid, command, app=app, tty=tty)


async def send_signal(executor: Executor, namespace: str, name: str, signum: int) -> str:
    """Deliver ``signum`` to the app processes of the task's pod; the pod's UUID."""
    pod = await running_pod(executor, namespace, name)
    await executor.signal(pod.uuid, signum)
    return pod.uuid


async def task_stats(executor: Executor, namespace: str, name: str) -> dict[str, Any]:
    """One sample of the task's pod, as a JSON-ready mapping."""
    pod = await running_pod(executor, namespace, name)
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
