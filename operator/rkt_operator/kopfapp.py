"""The kopf wiring of one node's agent, and nothing else: registry, operator settings, login,
start-up and shutdown (which start and stop the fingerprint loop of ``fingerprinter`` and
the metrics endpoint), the handlers' registration, and the supervisor that keeps the agent
from going deaf (``supervise``: new kopf runs when the RktTask resource is not served, the
health endpoint of ``health``). Log set-up is in ``logconfig``.

- Standalone (no peering: every node's agent owns a disjoint set of tasks).
- Only this node's tasks are watched, filtered by the API server: a field selector on
  ``spec.nodeName`` (the CRD declares it in ``selectableFields``), or the
  ``rktoperator.io/node`` label with ``--selector=label``; handlers filter again on
  ``spec.nodeName`` as a defence in depth.
- Finalizer ``rktoperator.io/finalizer``; kopf's progress annotations under
  ``rktoperator.io/`` (without kopf's marker annotation, ``handlers.UnmarkedProgress``); its
  diff-base (the last handled spec) in the agent's memory
  (``handlers.MemoryDiffBase``: no annotation write per handled change; one instance for
  every kopf run of the process); events reported as component ``rkt-operator``, instance =
  the node.
- ``scanning.disabled``: no CRD watch per replica (one discovery per kopf run), so RBAC
  needs no ``customresourcedefinitions`` list/watch; a CRD installed after the agent
  started is picked up by a new kopf run (``supervise``) within ``watch_stale_seconds``.
  Namespace globs or negations need kopf's Namespace watch; only then is scanning left on
  (and those RBAC rules are needed).
- Metrics (``rkt_operator.metrics``) are served at ``settings.metrics_endpoint`` from the
  agent's event loop; a port that cannot be bound is logged, not fatal (tasks matter more).
- Few API writes: one change handler per cause, all at once (``lifecycles.all_at_once``);
  the status is written by the reconciler only when it changed.
- Resync and probes: no kopf timer per task (kopf's timer machinery cost about 1 ms per
  task per tick, and a task each). An event handler (``handlers.track``) keeps the latest
  body of each of the node's tasks; one loop per kopf run (``handlers.NodeLoop``) ticks every
  :data:`PROBE_TICK_SECONDS`, resyncs each task every ``resync_interval_seconds`` (sooner
  when a back-off falls due) and runs the due probes of tasks that have any; a probe due
  between two ticks runs at the next one (periods kept to within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

import kopf
import yaml
from kopf._cogs.structs.references import Insights  # kopf.operator(insights=...) takes it

from rkt_operator import apiaccess, fingerprinter, handlers, kubeapi
from rkt_operator.executor.service import Executor
from rkt_operator.health import HealthServer, WatchHealth, short_error
from rkt_operator.metrics import server
from rkt_operator.metrics.collector import AgentMetrics, Exporter, PodSampler
from rkt_operator.model import api
from rkt_operator.reconcile.reconciler import Reconciler
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import InClusterAccess, Settings, in_cluster_access

log = logging.getLogger(__name__)

RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
SELECTOR_KEY = (api.GROUP, api.PLURAL)
STORAGE_PREFIX = api.GROUP  # kopf's progress annotations
REPORTING_COMPONENT = kubeapi.REPORTING_COMPONENT
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
    kopf_settings.persistence.progress_storage = handlers.UnmarkedProgress(prefix=STORAGE_PREFIX)
    if not isinstance(kopf_settings.persistence.diffbase_storage, handlers.MemoryDiffBase):
        kopf_settings.persistence.diffbase_storage = handlers.MemoryDiffBase(prefix=STORAGE_PREFIX)
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


def agent_endpoint(access: InClusterAccess | None) -> kubeapi.Endpoint:
    """Where the agent's own requests go: in a pod the in-cluster endpoint; elsewhere the
    kubeconfig's, as kopf's login reads it (``KUBECONFIG``, else ``~/.kube/config``), so
    both clients of the process use the same credentials. ``kubeapi.LoginError`` when
    neither is there or the kubeconfig cannot be used."""
    if access is not None:
        return kubeapi.in_cluster(access)
    try:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError, kopf.LoginError) as exc:
        raise kubeapi.LoginError(f"cannot read the kubeconfig: {short_error(exc)}") from None
    if info is None:
        raise kubeapi.LoginError("not in a pod, and no kubeconfig (KUBECONFIG, ~/.kube/config)")
    return kubeapi.from_login(info)


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    """A registry with the agent's handlers, bound to ``settings`` (node, intervals)."""
    registry = kopf.OperatorRegistry()
    node = settings.node_name

    def on_this_node(spec: kopf.Spec, **_: Any) -> bool:
        return bool(spec.get("nodeName") == node)

    on_node: dict[str, Any] = {"when": on_this_node}

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
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is None:  # not supervised (a bare kopf run of this registry)
            runtime = await start_runtime(
                agent_settings, settings.persistence.diffbase_storage, access
            )
            memo.runtime_owned = runtime
        memo.agent, memo.fingerprint = runtime.agent, runtime.fingerprint
        previous: handlers.NodeLoop | None = getattr(memo, "node_loop", None)
        if previous is not None:  # an earlier run's, should its clean-up not have run
            await previous.stop()
        memo.node_loop = handlers.NodeLoop(
            runtime.agent, kopf_settings=settings, tick=PROBE_TICK_SECONDS
        )
        memo.node_loop.start()
        log.info(
            "agent started node=%s selector=%s namespaces=%s",
            agent_settings.node_name,
            agent_settings.selector,
            ",".join(agent_settings.namespaces) or "*",
        )

    @kopf.on.cleanup(registry=registry, id="stop-agent")
    async def stop_agent(memo: kopf.Memo, **_: Any) -> None:
        node_loop: handlers.NodeLoop | None = getattr(memo, "node_loop", None)
        if node_loop is not None:
            await node_loop.stop()
        # The supervisor's runtime outlives this operator run; a bare run's ends with it.
        owned: Runtime | None = getattr(memo, "runtime_owned", None)
        if owned is not None:
            await stop_runtime(owned)
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
    # The node's tasks as the watch last delivered them, for the resync loop (``NodeLoop``).
    kopf.on.event(*RESOURCE, registry=registry, id=handlers.TRACK_ID)(handlers.track)
    return registry


@dataclass
class Runtime:
    """What outlives one kopf operator run inside the agent process: the agent (its
    reconciler and back-off memory), the fingerprint loop, the endpoints, the watch health.
    Created outside kopf's run (kopf cancels every task created during a run at its end)."""

    settings: Settings
    api: kubeapi.KubeApi
    agent: handlers.Agent
    fingerprint: fingerprinter.FingerprintState
    exporter: Exporter
    metrics_server: server.MetricsServer | None = None
    health: WatchHealth | None = None
    health_server: HealthServer | None = None


async def start_runtime(
    settings: Settings, diffbase: kopf.DiffBaseStorage, access: InClusterAccess | None
) -> Runtime:
    """The agent and its background work: reconciler, fingerprint loop, metrics endpoint."""
    metrics = AgentMetrics()
    rkt = RktCli(settings, observer=metrics.observe_rkt)
    kube = kubeapi.KubeApi(await asyncio.to_thread(agent_endpoint, access))
    executor = Executor(settings=settings, rkt=rkt)
    await executor.remove_aborted()  # what failed prepares left while the agent was away
    reconciler = Reconciler(settings=settings, executor=executor, api=kube)
    agent = handlers.Agent(
        settings=settings, reconciler=reconciler, diffbase=diffbase, metrics=metrics
    )
    state = fingerprinter.FingerprintState()
    exporter = Exporter(metrics, PodSampler(executor), fingerprint=lambda: state.result)
    metrics_server = await server.start_metrics(settings.metrics_endpoint, exporter.render)
    state.task = asyncio.create_task(
        fingerprinter.loop(state, settings=settings, rkt=rkt, api=kube), name="fingerprint"
    )
    return Runtime(settings, kube, agent, state, exporter, metrics_server)


async def stop_runtime(runtime: Runtime) -> None:
    state = runtime.fingerprint
    if state.task is not None:
        state.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.task
    if runtime.metrics_server is not None:
        await runtime.metrics_server.stop()
    await runtime.exporter.sampler.close()
    await runtime.api.close()
    if runtime.health_server is not None:
        await runtime.health_server.stop()


def _is_ours(resource: Any) -> bool:
    return bool(resource.group == api.GROUP and resource.plural == api.PLURAL)


def node_selector(settings: Settings) -> dict[str, str]:
    """The server-side selector of this node's tasks, as the client's LIST takes it."""
    if settings.selector == "label":
        return {"label_selector": f"{api.NODE_LABEL}={settings.node_name}"}
    return {"field_selector": f"spec.nodeName={settings.node_name}"}


def _take_signals(
    loop: asyncio.AbstractEventLoop, signalled: asyncio.Event, stop: asyncio.Event
) -> None:
    """SIGINT/SIGTERM end the agent: route them to our flags (kopf installs its own handlers
    at each run, which would end only that run and look like a failure to the supervisor)."""

    def on_signal() -> None:
        signalled.set()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)


async def _watch_checks(
    runtime: Runtime,
    health: WatchHealth,
    insights: Insights,
    stop: asyncio.Event,
    signalled: asyncio.Event,
    interval: float,
) -> None:
    """Feed ``health`` until ``stop``: is the resource served, can the node's tasks be
    listed. Sets ``stop`` when kopf must be restarted to look the resource up again."""
    loop = asyncio.get_running_loop()
    selector = node_selector(runtime.settings)
    await asyncio.sleep(0.2)  # let kopf install its signal handlers, then take them over
    while not stop.is_set():
        _take_signals(loop, signalled, stop)
        health.served(any(_is_ours(r) for r in insights.watched_resources))
        try:
            await runtime.api.list_node_tasks(**selector)
        except Exception as exc:  # noqa: BLE001 - any failure is the verdict, retried next round
            message = short_error(exc)
            if health.list_error != message:
                log.warning("cannot list this node's tasks (will retry): %s", message)
            health.listed(message)
        else:
            if health.list_error is not None:
                log.info("this node's tasks can be listed again")
            health.listed()
        if health.should_restart():
            log.warning(
                "the RktTask resource has not been served for %.0fs although the API answers: "
                "restarting the operator to look it up again",
                health.bound,
            )
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def supervise(settings: Settings, registry: kopf.OperatorRegistry) -> None:
    """Run kopf's operator until SIGINT/SIGTERM, starting it again (in this process) when
    it stops on its own (the watch of a deleted CRD fails) or does not serve the RktTask
    resource while the API answers (with scanning off, kopf looks resources up once per
    run): the agent is never deaf for longer than ``watch_stale_seconds``."""
    kopf_settings = kopf.OperatorSettings()
    configure(kopf_settings, settings)
    # A run that ends on an error is followed by a new one, not by kopf's last-resort SIGKILL.
    kopf_settings.process.ultimate_exiting_timeout = None
    runtime = await start_runtime(
        settings, kopf_settings.persistence.diffbase_storage, in_cluster_access()
    )
    health = runtime.health = WatchHealth(bound=settings.watch_stale_seconds)
    memo = kopf.Memo()
    memo.runtime = runtime
    if settings.liveness_endpoint:
        health_server = HealthServer(
            settings.liveness_endpoint, health, extra=lambda: {"rkt": runtime.fingerprint.probe()}
        )
        try:
            await health_server.start()
            runtime.health_server = health_server
        except OSError as exc:
            log.error("health endpoint %s not served: %s", settings.liveness_endpoint, exc)
    interval = max(1.0, min(10.0, settings.watch_stale_seconds / 4))
    backoff = 1.0
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        while not signalled.is_set():
            insights = Insights()
            stop = asyncio.Event()
            health.operator_started()
            checks = asyncio.create_task(
                _watch_checks(runtime, health, insights, stop, signalled, interval),
                name="watch checks",
            )
            began = loop.time()
            failure: BaseException | None = None
            try:
                await kopf.operator(
                    registry=registry,
                    settings=kopf_settings,
                    lifecycle=LIFECYCLE,
                    standalone=True,
                    clusterwide=not settings.namespaces,
                    namespaces=settings.namespaces,
                    insights=insights,
                    stop_flag=stop,
                    memo=memo,
                )
            except Exception as exc:  # noqa: BLE001 - logged below, then a new run
                failure = exc
            finally:
                stop.set()
                checks.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checks
            if signalled.is_set():
                return
            health.restarts += 1
            if loop.time() - began > settings.watch_stale_seconds:
                backoff = 1.0
            why = short_error(failure) if failure is not None else "it stopped or was deaf"
            log.warning("starting the operator again in %.0fs (%s)", backoff, why)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signalled.wait(), timeout=backoff)
            backoff = min(backoff * 2, 30.0)
    finally:
        await stop_runtime(runtime)


def run(settings: Settings) -> None:
    """Run the agent until SIGINT/SIGTERM (kopf's standalone operator loop, supervised)."""
    registry = build_registry(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(supervise(settings, registry))
