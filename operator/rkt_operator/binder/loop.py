"""The binder's I/O: watch, list, bind, report. Decisions come from ``binder.decide``.

Why a plain loop and not kopf: the binder's decision is about *all* unbound tasks against
*all* nodes at once (capacity is shared), not about one object at a time, and kopf's peering
pauses rather than elects. So the binder is level-based:

- two watch threads (Nodes, RktTasks) only raise a "something changed" flag; events that
  cannot change a placement (status churn of running tasks) are ignored;
- the main thread, while this replica leads (``binder.lease``), runs a *cycle*: a consistent
  LIST of Nodes and RktTasks (no resourceVersion, so never older than our own last bind),
  the usage of every node from its bound, unfinished tasks, then each unbound task in
  creation order through ``decide.choose``, taking the chosen node's share at once; the
  writes of the binds run on a small thread pool (many in flight, decisions still serial);
- a bind is two writes, each guarded by the resourceVersion just read or returned: the
  status (``Scheduled=True``) and then ``spec.nodeName``. A concurrent change of the task
  makes either fail with 409 Conflict and the task is looked at again in the next cycle; the
  CRD's CEL rule refuses any change of a nodeName already set, so no task is ever bound twice;
- an unschedulable task gets ``Scheduled=False`` with kube-scheduler's kind of message and a
  ``FailedScheduling`` event, once per distinct message; every change of a node or a task,
  and a periodic resync, tries again.

Size: the watch threads, the leader's cycle and the guarded two-write bind share the change
flag and the conflict rules above, so they are kept in one module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from rkt_operator.binder import decide
from rkt_operator.binder import status as st
from rkt_operator.binder.health import HealthServer
from rkt_operator.binder.lease import LeaseElector
from rkt_operator.model import api
from rkt_operator.model.spec import RktTaskSpec, validation_problems
from rkt_operator.settings import BinderSettings, split_http_endpoint

log = logging.getLogger(__name__)

GROUP = api.GROUP
VERSION = api.VERSION
PLURAL = api.PLURAL
KIND = api.KIND
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0
WATCH_SECONDS = 300
COMPONENT = "rkt-operator-binder"


@dataclass
class CycleResult:
    bound: int = 0
    unschedulable: int = 0
    conflicts: int = 0
    writes: int = 0
    bindings: list[tuple[str, str]] = field(default_factory=list)  # (namespace/name, node)


def _sort_key(task: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = task.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _demand_of_bound(task: Mapping[str, Any]) -> decide.Demand:
    """A bound task's footprint; a spec the model refuses counts with the default requests
    (it is the agent's business to report it, not the binder's to under-count it)."""
    try:
        return decide.demand_of(RktTaskSpec.model_validate(task.get("spec") or {}))
    except ValidationError:
        return decide.demand_of(RktTaskSpec.model_validate({"image": "/invalid"}))


def _ref(task: Mapping[str, Any]) -> str:
    meta = task.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class Binder:
    """One binder process: call ``run()``; ``stop()`` from a signal handler."""

    def __init__(
        self,
        api_client: client.ApiClient,
        settings: BinderSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._now = clock
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self.elector = LeaseElector(
            api_client,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            identity=settings.identity,
            lease_duration=settings.lease_duration_seconds,
            renew_deadline=settings.renew_deadline_seconds,
            retry_period=settings.retry_period_seconds,
            on_change=lambda leading: self._dirty.set(),
        )
        self.cycles = 0
        self.tick = time.monotonic()  # the main loop's heartbeat (health endpoint)
        self._demands: dict[tuple[str, int], decide.Demand] = {}
        self._lock = threading.Lock()
        # Decisions are made one task at a time; the writes of a bind (status, spec, event)
        # run on these threads so that many binds are in flight at once.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.bind_workers, thread_name_prefix="bind"
        )

    # -- watching ------------------------------------------------------------------------

    def _relevant_task_event(self, kind: str, task: Mapping[str, Any]) -> bool:
        if kind in ("DELETED", "ERROR"):
            return True
        if not (task.get("spec") or {}).get("nodeName"):
            return True  # unbound: new, edited, or our own status write (harmless)
        return not decide.counts_against_node(task)  # finished: its requests are free

    def _watch(self, what: str, stream: Callable[[watch.Watch], Iterator[Any]]) -> None:
        while not self._stop.is_set():
            watcher = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream(watcher):
                    if self._stop.is_set():
                        watcher.stop()  # type: ignore[no-untyped-call]
                        break
                    obj = event.get("object")
                    kind = str(event.get("type"))
                    if (
                        what == "nodes"
                        or not isinstance(obj, Mapping)
                        or self._relevant_task_event(kind, obj)
                    ):
                        self._dirty.set()
            except Exception as exc:  # noqa: BLE001 - a broken watch is restarted
                log.warning("watch=%s interrupted: %s", what, exc)
                self._stop.wait(1.0)
            self._dirty.set()  # a watch restarts from "now": re-list to miss nothing

    def _watch_nodes(self, watcher: watch.Watch) -> Iterator[Any]:
        return watcher.stream(  # type: ignore[no-any-return,no-untyped-call]
            self._core.list_node,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 30,
        )

    def _watch_tasks(self, watcher: watch.Watch) -> Iterator[Any]:
        return watcher.stream(  # type: ignore[no-any-return,no-untyped-call]
            self._custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 30,
        )

    # -- API calls -----------------------------------------------------------------------

    def _list_tasks(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page: Any = self._custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, limit=1000, _continue=token,
                _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items

    def _list_nodes(self) -> list[dict[str, Any]]:
        nodes = self._core.list_node(_request_timeout=REQUEST_TIMEOUT)
        serialised = self._core.api_client.sanitize_for_serialization(nodes)
        return list(serialised.get("items") or [])

    def _patch(self, task: Mapping[str, Any], body: Mapping[str, Any], *, status: bool) -> Any:
        meta = task["metadata"]
        send = (
            self._custom.patch_namespaced_custom_object_status
            if status
            else self._custom.patch_namespaced_custom_object
        )
        return send(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], dict(body),
            _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip

    def _event(self, task: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = task["metadata"]
        now = self._now()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body: Any = {
            "metadata": {
                "name": f"{meta['name'][:230]}.{time.time_ns():x}",  # names stop at 253
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.settings.identity,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(
                meta["namespace"], body, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:  # an event is a courtesy: never fail a bind over it
            log.warning(
                "event task=%s reason=%s not posted: %s %s",
                _ref(task),
                reason,
                exc.status,
                exc.reason,
            )

    # -- one cycle -----------------------------------------------------------------------

    def _report(self, task: dict[str, Any], verdict: st.Verdict, result: CycleResult) -> None:
        """Write an unbound task's Scheduled=False status (and event) if it changed."""
        current = task.get("status") or {}
        generation = int((task.get("metadata") or {}).get("generation") or 0)
        desired = st.build(verdict, current, generation=generation, now=self._now())
        if not st.needs_write(current, desired):
            return
        try:
            self._patch(task, {"status": desired}, status=True)
        except ApiException as exc:
            if exc.status in (404, 409):
                result.conflicts += 1
                return
            raise
        result.writes += 1
        log.info(
            "task=%s scheduled=false reason=%s message=%r",
            _ref(task),
            verdict.reason,
            verdict.message,
        )
        self._event(task, "Warning", "FailedScheduling", verdict.message)

    def _bind(self, task: dict[str, Any], node: str, message: str, result: CycleResult) -> bool:
        meta = task["metadata"]
        generation = int(meta.get("generation") or 0)
        verdict = st.Verdict(True, st.REASON_SCHEDULED, message)
        desired = st.build(verdict, task.get("status"), generation=generation, now=self._now())
        try:
            written = self._patch(
                task,
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": desired},
                status=True,
            )
            version = (written.get("metadata") or {}).get("resourceVersion")
            self._patch(
                task,
                {"metadata": {"resourceVersion": version}, "spec": {"nodeName": node}},
                status=False,
            )
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                with self._lock:
                    result.conflicts += 1
                log.info("task=%s bind to node=%s lost a race (%s)", _ref(task), node, exc.status)
                self._dirty.set()
                return False
            raise
        with self._lock:
            result.writes += 2
            result.bound += 1
            result.bindings.append((_ref(task), node))
        log.info("task=%s bound node=%s", _ref(task), node)
        self._event(task, "Normal", "Scheduled", f"Successfully assigned {_ref(task)} to {node}")
        return True

    def _demand(self, task: Mapping[str, Any]) -> decide.Demand:
        """A bound task's footprint, parsed once per (uid, generation): a spec only changes
        with its generation, and a burst re-lists the same bound tasks many times."""
        meta = task.get("metadata") or {}
        key = (str(meta.get("uid")), int(meta.get("generation") or 0))
        demand = self._demands.get(key)
        if demand is None:
            demand = self._demands[key] = _demand_of_bound(task)
        return demand

    def cycle(self) -> CycleResult:
        """List everything, place every unbound task. Only call while leading."""
        result = CycleResult()
        nodes = [decide.node_view(n) for n in self._list_nodes()]
        tasks = self._list_tasks()
        live = {
            (str(t["metadata"].get("uid")), int(t["metadata"].get("generation") or 0))
            for t in tasks
        }
        self._demands = {k: v for k, v in self._demands.items() if k in live}
        usage = decide.usage_by_node(
            (t["spec"]["nodeName"], self._demand(t))
            for t in tasks
            if (t.get("spec") or {}).get("nodeName") and decide.counts_against_node(t)
        )
        unbound = sorted(
            (
                t
                for t in tasks
                if not (t.get("spec") or {}).get("nodeName")
                and not (t.get("metadata") or {}).get("deletionTimestamp")
            ),
            key=_sort_key,
        )
        pending: list[Future[bool]] = []
        for task in unbound:
            self.tick = time.monotonic()
            if self._stop.is_set() or not self.elector.leading():
                log.info("no longer leading: cycle stopped")
                break
            try:
                spec = RktTaskSpec.model_validate(task.get("spec") or {})
            except ValidationError as exc:
                text = "; ".join(f"{path}: {msg}" for path, msg in validation_problems(exc))
                verdict = st.Verdict(False, st.REASON_INVALID, f"invalid spec: {text}", True)
                self._report(task, verdict, result)
                continue
            choice = decide.choose(spec, nodes, usage, self.settings.strategy)
            if choice.node is None:
                result.unschedulable += 1
                self._report(
                    task, st.Verdict(False, st.REASON_UNSCHEDULABLE, choice.message), result
                )
                continue
            # The node's share is taken now, before the writes: the next decisions see it. A
            # bind that then fails only leaves the share unused until the next cycle.
            usage.setdefault(choice.node, decide.Usage()).add(decide.demand_of(spec))
            pending.append(self._pool.submit(self._bind, task, choice.node, choice.message, result))
        for future in pending:
            future.result()  # re-raises what a bind raised beyond a lost race
        self.cycles += 1
        return result

    # -- process -------------------------------------------------------------------------

    def run(self) -> None:
        """Elect, watch and bind until ``stop()``; releases the Lease on the way out."""
        threads = [
            threading.Thread(target=self.elector.run, name="lease", daemon=True),
            threading.Thread(
                target=self._watch,
                args=("nodes", self._watch_nodes),
                name="watch-nodes",
                daemon=True,
            ),
            threading.Thread(
                target=self._watch,
                args=("tasks", self._watch_tasks),
                name="watch-tasks",
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        health = self._health()
        log.info(
            "binder started identity=%s strategy=%s lease=%s/%s",
            self.settings.identity,
            self.settings.strategy,
            self.settings.lease_namespace,
            self.settings.lease_name,
        )
        while not self._stop.is_set():
            self.tick = time.monotonic()
            self._dirty.wait(self.settings.resync_seconds)
            if self._stop.is_set():
                break
            self._dirty.clear()
            if not self.elector.leading():
                continue
            started = time.monotonic()
            try:
                result = self.cycle()
            except Exception as exc:  # noqa: BLE001 - log, back off, try again
                log.error("cycle failed: %s", exc)
                self._stop.wait(1.0)
                self._dirty.set()
                continue
            if result.bound or result.writes or result.conflicts:
                log.info(
                    "cycle bound=%d unschedulable=%d conflicts=%d seconds=%.3f",
                    result.bound,
                    result.unschedulable,
                    result.conflicts,
                    time.monotonic() - started,
                )
        self._pool.shutdown(wait=True)
        if health is not None:
            health.stop()
        self.elector.stop()
        threads[0].join(timeout=15)
        log.info("binder stopped identity=%s", self.settings.identity)

    def _health(self) -> HealthServer | None:
        if not self.settings.health_endpoint:
            return None
        host, port, path = split_http_endpoint(self.settings.health_endpoint)
        # Stalled: no tick for several resync periods (a cycle ticks once per task, and
        # every API call in it times out after REQUEST_TIMEOUT).
        stale = max(4 * self.settings.resync_seconds, 4 * REQUEST_TIMEOUT)
        return HealthServer(
            host, port, path, last_tick=lambda: self.tick, stale_after=stale
        ).start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
