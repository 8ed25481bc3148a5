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
* ``rkt``: the **same rkt work** as the agent with nothing around it: the ``client`` loop,
  and for each new task, with the agent's concurrency (``MAX_CONCURRENT_STARTS``), the
  agent's own plan (``argv.build_launch_plan``), ``rkt prepare``, the agent's launcher
  (``Launcher.launch``: the same supervisor and ``rkt run-prepared``), the agent's network
  discovery (``rkt status`` until the IP shows, woken by the same wake-up files,
  ``rkt cat-manifest`` when the task names ports), then one status PATCH with the real
  UUID and IP. No kopf, finalizer, event, start lock, intermediate status or ``rkt list``.
  Settings flags after the floor's own (``--rkt-path=...``, ``--task-root=...``) are the
  agent's (``rkt-operator run`` flags).

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


def running_status(
    node: str, generation: int, serial: int, *, pod: str | None = None, ip: str | None = None
) -> dict[str, Any]:
    """The status of a task whose pod runs, in the agent's words; made-up pod facts unless
    the real ``pod`` UUID and ``ip`` are given."""
    now = _now()
    pod = pod or str(uuid.uuid4())
    ip = ip or f"172.16.{28 + serial // 250 % 200}.{2 + serial % 250}"
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


Starter = Any  # (obj, patch) -> None: hands a task to the rkt engine instead of patching


def run_client(
    node: str,
    selector: str,
    namespaces: list[str],
    stop: threading.Event,
    starter: Starter | None = None,
) -> None:
    from kubernetes import client, config, watch
    from kubernetes.client.exceptions import ApiException

    config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()
    handled: set[str] = set()
    chosen = selectors(node, selector)

    def patch(obj: dict[str, Any], status: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": status},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to do
                raise

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
        handled.add(meta["uid"])
        if starter is not None:
            starter(obj, patch)
            return
        generation = int(meta.get("generation") or 1)
        patch(obj, running_status(node, generation, len(handled)))

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


# ----- engine: the same rkt work as the agent -------------------------------------------------


def run_rkt(
    node: str, selector: str, namespaces: list[str], stop: threading.Event, agent_flags: list[str]
) -> None:
    """The ``client`` loop in a thread; each new task started on an asyncio loop here with
    the agent's plan, rkt adapter, launcher and discovery, at the agent's concurrency."""
    import asyncio

    from rkt_operator import settings as agent_settings
    from rkt_operator.executor import discovery, files
    from rkt_operator.executor.launcher import Launcher
    from rkt_operator.model.spec import RktTaskSpec
    from rkt_operator.reconcile.applying import MAX_CONCURRENT_STARTS
    from rkt_operator.rkt import argv
    from rkt_operator.rkt.cli import RktCli
    from rkt_operator.rkt.types import TaskDirs, TaskIdentity

    parser = agent_settings.build_parser(argparse.ArgumentParser(prog="floor --engine=rkt"))
    settings = agent_settings.load(parser.parse_args([f"--node-name={node}", *agent_flags]))
    rkt = RktCli(settings)
    launcher = Launcher(settings=settings, rkt=rkt)
    loop = asyncio.new_event_loop()
    gate = asyncio.Semaphore(MAX_CONCURRENT_STARTS)
    serial = iter(range(1 << 30))

    async def start(obj: dict[str, Any], patch: Any) -> None:
        meta = obj["metadata"]
        identity = TaskIdentity(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
        )
        try:
            spec = RktTaskSpec.model_validate(obj["spec"])
            dirs = TaskDirs.for_task(settings.task_root, identity)
            plan = argv.build_launch_plan(
                spec, settings=settings, identity=identity, dirs=dirs, env=[]
            )
            async with gate:
                for path in (dirs.root, dirs.alloc, dirs.local, dirs.secrets):
                    path.mkdir(parents=True, exist_ok=True, mode=0o755)
                files.logs_dir(dirs.root).mkdir(parents=True, exist_ok=True)
                pod = await rkt.prepare(plan.prepare)
                await launcher.launch(plan, pod)
                found = await discovery.discover(
                    rkt,
                    pod,
                    want_ip=plan.discover_network,
                    port_names=plan.port_names if plan.discover_network else (),
                    deadline_seconds=settings.discovery_timeout_seconds,
                    wake_on=discovery.wake_paths(
                        settings.rkt_dir,
                        pod,
                        want_ip=plan.discover_network,
                        launch_root=dirs.root,
                    ),
                )
        except Exception:
            log.exception("start of %s/%s failed", identity.namespace, identity.name)
            return
        status = running_status(
            node, identity.generation, next(serial), pod=pod, ip=found.ip or "-"
        )
        status["portMap"] = dict(found.port_map)
        await asyncio.to_thread(patch, obj, status)

    def starter(obj: dict[str, Any], patch: Any) -> None:
        asyncio.run_coroutine_threadsafe(start(obj, patch), loop)

    watcher = threading.Thread(
        target=run_client,
        args=(node, selector, namespaces, stop, starter),
        name="watch",
        daemon=True,
    )

    async def main() -> None:
        watcher.start()
        await asyncio.to_thread(stop.wait)

    loop.run_until_complete(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="floor", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("kopf", "client", "rkt"), default="kopf")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--selector", choices=("field", "label"), default="field")
    parser.add_argument("--namespace", action="append", default=[], dest="namespaces")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    args, agent_flags = parser.parse_known_args(argv)
    if agent_flags and args.engine != "rkt":
        parser.error(f"unrecognized arguments: {' '.join(agent_flags)}")
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
    if args.engine == "rkt":
        run_rkt(args.node_name, args.selector, args.namespaces, stop, agent_flags)
        return 0
    run_client(args.node_name, args.selector, args.namespaces, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
