"""The kopf wiring of one node's agent: registry, operator settings, start-up and shutdown,
the periodic node fingerprint, the liveness probes and the metrics endpoint.

- Standalone (no peering: every node's agent owns a disjoint set of tasks).
- Only this node's tasks are watched, filtered by the API server: a field selector on
  ``spec.nodeName`` (the CRD declares it in ``selectableFields``), or the
  ``rktoperator.io/node`` label with ``--selector=label``; handlers filter again on
  ``spec.nodeName`` as a defence in depth.
- Finalizer ``rktoperator.io/finalizer``; kopf's progress and diff-base annotations under
  ``rktoperator.io/``; events reported as component ``rkt-operator``, instance = the node.
- ``scanning.disabled``: no CRD watch per replica (one discovery at start-up), so RBAC
  needs no ``customresourcedefinitions`` list/watch, and a CRD installed after the agent
  started is seen only after the agent restarts. Namespace globs or negations need kopf's
  Namespace watch; only then is scanning left on (and those RBAC rules are needed).
- Metrics (``rkt_operator.metrics``) are served at ``settings.metrics_endpoint`` from the
  agent's event loop; a port that cannot be bound is logged, not fatal (tasks matter more).
- Few API writes: one change handler per cause, all at once (``lifecycles.all_at_once``);
  the status is written by the reconciler only when it changed.
- Probes: a second timer, every :data:`PROBE_TICK_SECONDS` and only for tasks that have a
  readiness or liveness probe, runs the probes that are due; a probe due between two ticks
  runs at the next one (so periods are kept to within a second, whatever the resync
  interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kopf

from rkt_operator import apiaccess, fingerprint, handlers, kubeapi
from rkt_operator.executor.service import Executor
from rkt_operator.metrics.collector import AgentMetrics, Exporter, PodSampler
from rkt_operator.metrics.server import MetricsServer
from rkt_operator.reconcile.reconciler import Reconciler
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import InClusterAccess, Settings, in_cluster_access

log = logging.getLogger(__name__)

GROUP = kubeapi.GROUP
RESOURCE = (GROUP, kubeapi.VERSION, kubeapi.PLURAL)
SELECTOR_KEY = (GROUP, kubeapi.PLURAL)
FINALIZER = kubeapi.FINALIZER
NODE_LABEL = "rktoperator.io/node"
STORAGE_PREFIX = "rktoperator.io"
REPORTING_COMPONENT = "rkt-operator"
LIFECYCLE = kopf.lifecycles.all_at_once
# How often the agent looks for due probes (spec.*Probe.periodSeconds is at least 1).
PROBE_TICK_SECONDS = 1.0


def _is_pattern(namespace: str) -> bool:
    return any(ch in namespace for ch in "*?!,")


def configure(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """Apply the agent's choices to kopf's settings (called by the start-up handler)."""
    node = settings.node_name
    kopf_settings.peering.standalone = True
    if settings.selector == "label":
        kopf_settings.watching.label_selectors[SELECTOR_KEY] = f"{NODE_LABEL}={node}"
    else:
        kopf_settings.watching.field_selectors[SELECTOR_KEY] = f"spec.nodeName={node}"
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=STORAGE_PREFIX
    )
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    kopf_settings.posting.reporting_component = REPORTING_COMPONENT
    kopf_settings.posting.reporting_instance = node
    kopf_settings.scanning.disabled = not any(_is_pattern(ns) for ns in settings.namespaces)
    kopf_settings.execution.default_backoff = settings.restart_backoff_seconds


@dataclass
class FingerprintState:
    """The latest fingerprint, for the liveness probe and the Node labels."""

    result: fingerprint.Fingerprint | None = None
    taken_at: float = 0.0
    published: dict[str, str | None] = field(default_factory=dict)
    node_missing: bool = False
    task: asyncio.Task[None] | None = None

    def probe(self) -> dict[str, Any]:
        if self.result is None:
            return {"healthy": None, "description": "not fingerprinted yet"}
        return {
            "healthy": self.result.healthy,
            "detected": self.result.detected,
            "description": self.result.description,
            "age_seconds": round(time.monotonic() - self.taken_at, 1),
        }


async def refresh_fingerprint(
    state: FingerprintState, *, settings: Settings, rkt: RktCli, api: kubeapi.KubeApi
) -> None:
    """Fingerprint once; publish the labels on this node's Node when they changed."""
    result = await fingerprint.fingerprint(settings, rkt)
    changed = state.result is None or state.result.healthy != result.healthy
    state.result, state.taken_at = result, time.monotonic()
    if changed:
        level = logging.INFO if result.healthy else logging.WARNING
        log.log(level, "fingerprint healthy=%s: %s", result.healthy, result.description)
    if not settings.publish_fingerprint:
        return
    labels = fingerprint.node_labels(result)
    if labels == state.published:
        return
    try:
        found = await api.label_node(settings.node_name, labels)
    except Exception as exc:  # noqa: BLE001 - publishing is best effort, retried next round
        log.warning("could not label node %s: %s", settings.node_name, exc)
        return
    if not found:
        if not state.node_missing:
            log.warning("node %s not found: fingerprint labels not published", settings.node_name)
        state.node_missing = True
        return
    state.node_missing = False
    state.published = dict(labels)
    log.info("node %s labelled: %s", settings.node_name, labels)


async def _fingerprint_loop(
    state: FingerprintState, *, settings: Settings, rkt: RktCli, api: kubeapi.KubeApi
) -> None:
    while True:
        try:
            await refresh_fingerprint(state, settings=settings, rkt=rkt, api=api)
        except Exception:  # the loop must outlive one bad round
            log.exception("fingerprint round failed")
        await asyncio.sleep(settings.fingerprint_interval_seconds)


async def start_metrics(endpoint: str, exporter: Exporter) -> MetricsServer | None:
    """Serve the exporter at ``endpoint`` (empty: not at all). A bind failure (port taken)
    is logged and the agent goes on without metrics."""
    if not endpoint:
        return None
    server = MetricsServer(endpoint, exporter.render)
    try:
        await server.start()
    except OSError as exc:
        log.error("metrics endpoint %s not served: %s", endpoint, exc)
        return None
    return server


def login_in_cluster(access: InClusterAccess, token: apiaccess.TokenFile) -> kopf.ConnectionInfo:
    """kopf's credentials from the in-cluster access (a token that cannot be read is a
    temporary error: kopf retries the login)."""
    try:
        creds = apiaccess.kopf_credentials(access, token)
    except apiaccess.TokenUnavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from None
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_path,
        scheme="Bearer",
        token=creds.token,
        default_namespace=creds.default_namespace,
        expiration=creds.expiration,
    )


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    """A registry with the agent's handlers, bound to ``settings`` (node, intervals)."""
    registry = kopf.OperatorRegistry()
    node = settings.node_name

    def on_this_node(spec: kopf.Spec, **_: Any) -> bool:
        return bool(spec.get("nodeName") == node)

    on_node: dict[str, Any] = {"when": on_this_node}

    def probed_on_this_node(spec: kopf.Spec, **_: Any) -> bool:
        has_probe = bool(spec.get("readinessProbe") or spec.get("livenessProbe"))
        return has_probe and on_this_node(spec)

    access = in_cluster_access()
    token = apiaccess.TokenFile(access.token_file) if access is not None else None

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: client-go's in-cluster way (service host/port, no DNS; the token is
        # re-read every minute and after a 401); elsewhere: the kubeconfig (KUBECONFIG).
        if access is None or token is None:
            info: kopf.ConnectionInfo | None = kopf.login_with_kubeconfig(**kwargs)
            return info
        return login_in_cluster(access, token)

    @kopf.on.startup(registry=registry, id="start-agent")
    async def start_agent(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings, agent_settings)
        metrics = AgentMetrics()
        rkt = RktCli(agent_settings, observer=metrics.observe_rkt)
        api = kubeapi.KubeApi(await asyncio.to_thread(kubeapi.connect, access=access))
        executor = Executor(settings=agent_settings, rkt=rkt)
        reconciler = Reconciler(settings=agent_settings, executor=executor, api=api)
        memo.agent = handlers.Agent(
            settings=agent_settings,
            reconciler=reconciler,
            diffbase=settings.persistence.diffbase_storage,
            metrics=metrics,
        )
        state = FingerprintState()
        memo.fingerprint = state
        memo.exporter = Exporter(metrics, PodSampler(executor), fingerprint=lambda: state.result)
        memo.metrics_server = await start_metrics(agent_settings.metrics_endpoint, memo.exporter)
        state.task = asyncio.create_task(
            _fingerprint_loop(state, settings=agent_settings, rkt=rkt, api=api),
            name="fingerprint",
        )
        log.info(
            "agent started node=%s selector=%s namespaces=%s",
            agent_settings.node_name,
            agent_settings.selector,
            ",".join(agent_settings.namespaces) or "*",
        )

    @kopf.on.cleanup(registry=registry, id="stop-agent")
    async def stop_agent(memo: kopf.Memo, **_: Any) -> None:
        state: FingerprintState | None = getattr(memo, "fingerprint", None)
        if state is not None and state.task is not None:
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.task
        server: MetricsServer | None = getattr(memo, "metrics_server", None)
        if server is not None:
            await server.stop()
        exporter: Exporter | None = getattr(memo, "exporter", None)
        if exporter is not None:
            await exporter.sampler.close()
        # Pods are left running on purpose: they outlive the agent and are adopted later.

    @kopf.on.probe(registry=registry, id="rkt")
    async def rkt_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
        state: FingerprintState | None = getattr(memo, "fingerprint", None)
        return state.probe() if state is not None else {"healthy": None}

    agent_settings = settings
    kopf.on.create(*RESOURCE, registry=registry, id="create", **on_node)(handlers.reconcile)
    kopf.on.resume(*RESOURCE, registry=registry, id="resume", **on_node)(handlers.reconcile)
    kopf.on.update(*RESOURCE, registry=registry, id="update", field="spec", **on_node)(
        handlers.update
    )
    kopf.on.delete(*RESOURCE, registry=registry, id="delete", **on_node)(handlers.delete)
    kopf.timer(
        *RESOURCE,
        registry=registry,
        id="resync",
        interval=settings.resync_interval_seconds,
        initial_delay=settings.resync_interval_seconds,
        **on_node,
    )(handlers.resync)
    kopf.timer(
        *RESOURCE,
        registry=registry,
        id="probe",
        interval=PROBE_TICK_SECONDS,
        when=probed_on_this_node,
    )(handlers.probe)
    return registry


class KeyValueFormatter(logging.Formatter):
    """``time=... level=... logger=... object=ns/name msg="..."``: one line per record,
    the object only when kopf's per-object logger adds it."""

    def format(self, record: logging.LogRecord) -> str:
        ref = getattr(record, "k8s_ref", None)
        fields = [
            ("time", self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")),
            ("level", record.levelname),
            ("logger", record.name),
        ]
        if isinstance(ref, dict) and ref.get("name"):
            obj = f"{ref.get('namespace')}/{ref['name']}" if ref.get("namespace") else ref["name"]
            fields.append(("object", str(obj)))
        fields.append(("msg", record.getMessage()))
        line = " ".join(f"{k}={json.dumps(v) if _needs_quotes(v) else v}" for k, v in fields)
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


def _needs_quotes(value: str) -> bool:
    return not value or any(ch.isspace() or ch in '"=' for ch in value)


class RoutineFilter(logging.Filter):
    """Drops kopf's line for every successful resync or probe tick (one per task every few
    seconds, or every second): the timers' outcome is already visible in the status and
    events."""

    ROUTINE = frozenset({"Timer 'resync' succeeded.", "Timer 'probe' succeeded."})

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "kopf.objects"
            and record.levelno == logging.INFO
            and record.getMessage() in self.ROUTINE
        )


def setup_logging(log_format: str, level: str) -> None:
    """JSON lines (kopf's formatter, the object under "object") or key=value text."""
    if log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object")
    else:
        kopf.configure(log_format=kopf.LogFormat.PLAIN)
    for handler in logging.getLogger().handlers:
        if log_format != "json":
            handler.setFormatter(KeyValueFormatter())
        if level != "DEBUG":
            handler.addFilter(RoutineFilter())
    logging.getLogger().setLevel(level)


def run(settings: Settings) -> None:
    """Run the agent until SIGINT/SIGTERM (kopf's standalone operator loop)."""
    registry = build_registry(settings)
    namespaces = settings.namespaces
    kopf.run(
        registry=registry,
        lifecycle=LIFECYCLE,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=settings.liveness_endpoint or None,
        memo=kopf.Memo(),
    )
