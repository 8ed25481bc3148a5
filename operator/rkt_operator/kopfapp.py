"""The kopf wiring of one node's agent, and nothing else: registry, operator settings, login,
start-up and shutdown (which start and stop the fingerprint loop of ``fingerprinter`` and
the metrics endpoint), kopf's liveness probe, the handlers' registration. Log set-up is in
``logconfig``.

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
import logging
from typing import Any

import kopf

from rkt_operator import apiaccess, fingerprinter, handlers, kubeapi
from rkt_operator.executor.service import Executor
from rkt_operator.metrics import server
from rkt_operator.metrics.collector import AgentMetrics, Exporter, PodSampler
from rkt_operator.model import api
from rkt_operator.reconcile.reconciler import Reconciler
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import InClusterAccess, Settings, in_cluster_access

log = logging.getLogger(__name__)

RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
SELECTOR_KEY = (api.GROUP, api.PLURAL)
STORAGE_PREFIX = api.GROUP  # kopf's progress and diff-base annotations
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
        kopf_settings.watching.label_selectors[SELECTOR_KEY] = f"{api.NODE_LABEL}={node}"
    else:
        kopf_settings.watching.field_selectors[SELECTOR_KEY] = f"spec.nodeName={node}"
    kopf_settings.persistence.finalizer = api.FINALIZER
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
        kube = kubeapi.KubeApi(await asyncio.to_thread(kubeapi.connect, access=access))
        executor = Executor(settings=agent_settings, rkt=rkt)
        await executor.remove_aborted()  # what failed prepares left while the agent was away
        reconciler = Reconciler(settings=agent_settings, executor=executor, api=kube)
        memo.agent = handlers.Agent(
            settings=agent_settings,
            reconciler=reconciler,
            diffbase=settings.persistence.diffbase_storage,
            metrics=metrics,
        )
        state = fingerprinter.FingerprintState()
        memo.fingerprint = state
        memo.exporter = Exporter(metrics, PodSampler(executor), fingerprint=lambda: state.result)
        memo.metrics_server = await server.start_metrics(
            agent_settings.metrics_endpoint, memo.exporter.render
        )
        state.task = asyncio.create_task(
            fingerprinter.loop(state, settings=agent_settings, rkt=rkt, api=kube),
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
        state: fingerprinter.FingerprintState | None = getattr(memo, "fingerprint", None)
        if state is not None and state.task is not None:
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.task
        metrics_server: server.MetricsServer | None = getattr(memo, "metrics_server", None)
        if metrics_server is not None:
            await metrics_server.stop()
        exporter: Exporter | None = getattr(memo, "exporter", None)
        if exporter is not None:
            await exporter.sampler.close()
        # Pods are left running on purpose: they outlive the agent and are adopted later.

    @kopf.on.probe(registry=registry, id="rkt")
    async def rkt_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
        state: fingerprinter.FingerprintState | None = getattr(memo, "fingerprint", None)
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
