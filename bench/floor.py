"""The benchmark's floor: a controller that does nothing but what every RktTask controller must.

It watches the RktTasks of one node with the same server-side selector as the agent
(``spec.nodeName=<node>``, or the ``rktoperator.io/node`` label) and, for each new task,
writes the same final status the agent writes for a started service (phase Running, a pod
UUID, an IP, startedAt, observedGeneration, Ready/Reconciling/Stalled conditions, in one
write), without any rkt work, finalizer or event. Two engines:

* ``kopf``: one ``@kopf.on.create`` handler, kopf configured as the agent configures it
  (standalone, the server-side selector) with event posting off: the cost of the framework.
* ``client``: a plain list+watch loop with the kubernetes client, one status PATCH per task:
  the least any controller can do.

Run by ``bench_agent.py`` as ``python bench/floor.py --engine kopf --node-name N``, with
``KUBECONFIG`` in the environment. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import signal
import sys
import threading
import uuid
from typing import Any

GROUP, VERSION, PLURAL = "rktoperator.io", "v1alpha1", "rkttasks"
NODE_LABEL = "rktoperator.io/node"

log = logging.getLogger("bench.floor")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(node: str, generation: int, serial: int) -> dict[str, Any]:
    """The status of a task whose pod runs, in the agent's words, with made-up pod facts."""
    now = _now()
    pod = str(uuid.uuid4())
    ip = f"172.16.{28 + serial // 250 % 200}.{2 + serial % 250}"
    message = f"pod {pod} is running at {ip}"

    def condition(kind: str, holds: bool) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if holds else "False",
            "reason": "PodRunning",
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        }

    return {
        "phase": "Running",
        "observedGeneration": generation,
        "conditions": [
            condition("Ready", True),
            condition("Reconciling", False),
            condition("Stalled", False),
        ],
        "message": message,
        "uuid": pod,
        "ip": ip,
        "portMap": {},
        "ports": [],
        "nodeName": node,
        "startedAt": now,
        "restarts": 0,
    }


def selectors(node: str, kind: str) -> dict[str, Any]:
    """Keyword arguments of a list/watch call that select the node's tasks server-side."""
    if kind == "label":
        return {"label_selector": f"{NODE_LABEL}={node}"}
    return {"field_selector": f"spec.nodeName={node}"}


# ----- engine: kopf ---------------------------------------------------------------------------


def run_kopf(node: str, selector: str, namespaces: list[str]) -> None:
    import kopf  # only this engine needs it

    serial = iter(range(1 << 30))

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.standalone = True
        settings.posting.enabled = False
        if selector == "label":
            settings.watching.label_selectors[GROUP, PLURAL] = f"{NODE_LABEL}={node}"
        else:
            settings.watching.field_selectors[GROUP, PLURAL] = f"spec.nodeName={node}"

    @kopf.on.create(GROUP, VERSION, PLURAL)
    def start(meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
        generation = int(meta.get("generation") or 1)
        patch.status.update(running_status(node, generation, next(serial)))

    kopf.run(standalone=True, clusterwide=not namespaces, namespaces=namespaces)


# ----- engine: the kubernetes client ----------------------------------------------------------


def run_client(node: str, selector: str, namespaces: list[str], stop: threading.Event) -> None:
    from kubernetes import client, config, watch
    from kubernetes.client.exceptions import ApiException

    config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()
    handled: set[str] = set()
    chosen = selectors(node, selector)

    def listing(**kwargs: Any) -> Any:
        if namespaces:  # one namespace is enough for the benchmark
            return api.list_namespaced_custom_object(
                GROUP, VERSION, namespaces[0], PLURAL, **chosen, **kwargs
            )
        return api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **chosen, **kwargs)

    def handle(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if meta["uid"] in handled or (obj.get("status") or {}).get("phase") == "Running":
            return
        generation = int(meta.get("generation") or 1)
        body = {"status": running_status(node, generation, len(handled))}
        try:
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body,
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to do
                raise
        handled.add(meta["uid"])

    version = ""
    while not stop.is_set():
        if not version:
            items = listing()
            for obj in items["items"]:
                handle(obj)
            version = items["metadata"]["resourceVersion"]
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            events = stream.stream(  # type: ignore[no-untyped-call]
                listing, resource_version=version, allow_watch_bookmarks=True, timeout_seconds=5
            )
            for event in events:
                obj = event["object"]
                if event["type"] == "ERROR":
                    version = ""  # usually 410 Gone: list again
                    break
                version = obj["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    handle(obj)
                if stop.is_set():
                    stream.stop()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            if exc.status != 410:
                raise
            version = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="floor", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("kopf", "client"), default="kopf")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--selector", choices=("field", "label"), default="field")
    parser.add_argument("--namespace", action="append", default=[], dest="namespaces")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    if args.engine == "kopf":
        run_kopf(args.node_name, args.selector, args.namespaces)  # kopf handles SIGTERM/SIGINT
        return 0

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        raise SystemExit(0)  # the loop may be blocked in a read

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)
    run_client(args.node_name, args.selector, args.namespaces, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
