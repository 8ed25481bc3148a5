"""Benchmark of the rkt-operator node agent against a floor, on a real local control plane.

One command (``make bench``, or ``.venv/bin/python bench/bench_agent.py``) starts etcd and
kube-apiserver, installs the CRD, runs ONE agent (``rkt-operator run``) on the rkt simulator
for node ``bench-node`` with a long-running busybox image in the node's store, applies N
tasks at once and prints apply-to-Running latency (p50/p95/p99), throughput, API writes per
task (the API server's own ``apiserver_request_total``), peak RSS and CPU; then the same for
the floors (``floor.py``: the same watch and the same final status, no rkt work) on fresh
batches for other node names, and the agent/floor ratios. Everything it started is stopped
and removed at the end, also on Ctrl-C or SIGTERM. See bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from controllers import REPO, Controller, node_flags
from controllers import agent as agent_controller
from controllers import floor as floor_controller
from phase import run_phase
from report import PhaseResult, render_json, render_text
from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.netd import UserNetworks
from scale import check_memory, run_scale
from scale import render as render_scale
from simnode import IMAGE_NAME, IMAGE_VERSION, SimNode, service_spec

log = logging.getLogger("bench")

NAMESPACE = "bench"
AGENT_NODE = "bench-node"
VENV_BIN = Path(sys.executable).parent
FLOOR_ENGINES = ("rkt", "kopf", "client")
# The scale mode's network: ptp like rkt's `default`, on a /16 (65,533 addresses).
SCALE_NET_PREFIX = "benchscale"
SCALE_NET: dict[str, Any] = {
    "type": "ptp",
    "ipMasq": True,
    "ipam": {"type": "host-local", "subnet": "10.213.0.0/16", "routes": [{"dst": "0.0.0.0/0"}]},
}
NSPAWN_WRAPPER_DIR = REPO / "helm" / "node"  # systemd-nspawn shim for real rkt's host stage1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_agent.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--tasks", type=int, default=None, help="tasks per batch (default 200; --scale: 1000)"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="the scale mode instead of the phases: --tasks tasks (default 1000) on one node, "
        "--running of them services (default 500): agent RSS, idle resync cost, restart",
    )
    parser.add_argument(
        "--running", type=int, default=500, help="--scale: how many tasks are services"
    )
    parser.add_argument(
        "--idle", type=float, default=60.0, help="--scale: seconds of the idle window"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a batch may take to be all Running (default 900; --scale: 1800, "
        "about twice what 1,000 starts take on 2 shared cores)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also write the figures as JSON to FILE; alone, JSON goes to stdout and the "
        "table to stderr",
    )
    parser.add_argument(
        "--floors",
        default=",".join(FLOOR_ENGINES),
        help="floor engines to measure, comma-separated: rkt, kopf, client, or none",
    )
    parser.add_argument(
        "--rkt",
        type=Path,
        default=None,
        metavar="BINARY",
        help="run the agent and the rkt floor on this real rkt binary (host stage1, as root) "
        "instead of the simulator",
    )
    parser.add_argument("--no-agent", action="store_true", help="measure the floors only")
    parser.add_argument(
        "--assets",
        type=Path,
        default=None,
        help="folder with etcd, kube-apiserver, kubectl (default: $KUBEBUILDER_ASSETS)",
    )
    parser.add_argument("--crds", type=Path, default=REPO / "crds", help="CRD folder")
    parser.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        help="extra flag for `rkt-operator run` (repeatable), e.g. --agent-arg=--log-level=DEBUG",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="run the agent under yappi (CPU clock, every thread) and write its profile to "
        "FILE when it stops (the agent's figures then include the profiler's own cost)",
    )
    parser.add_argument(
        "--profile-memory",
        action="store_true",
        help="with --profile: tracemalloc instead of yappi (the Python heap's largest "
        "allocation sites when the agent stops; its RSS then includes tracemalloc's own)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, manifests)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = 1000 if args.scale else 200
    if args.timeout is None:
        args.timeout = 1800.0 if args.scale else 900.0
    args.running = min(args.running, args.tasks)
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")
    floors = [f.strip() for f in args.floors.split(",") if f.strip() and f.strip() != "none"]
    unknown = sorted(set(floors) - set(FLOOR_ENGINES))
    if unknown:
        parser.error(f"unknown floor engine(s): {', '.join(unknown)}")
    args.floor_engines = floors
    if args.no_agent and not floors:
        parser.error("nothing to measure")
    if args.assets is None:
        value = os.environ.get("KUBEBUILDER_ASSETS", "")
        if not value:
            parser.error(
                "set KUBEBUILDER_ASSETS or pass --assets (`make bench` does it: "
                "`export $(bash .ci/testbin.sh | tail -1)`)"
            )
        args.assets = Path(value)
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _setup_cluster(plane: ControlPlane, crds: Path, nodes: list[str]) -> None:
    installed = plane.apply_crds(crds)
    if not any("rkttasks.rktoperator.io" in name for name in installed):
        raise RuntimeError(f"no RktTask CRD in {crds}")
    plane.kubectl("create", "namespace", NAMESPACE)
    for node in nodes:
        plane.kubectl(
            "apply", "-f", "-",
            input=f'{{"apiVersion": "v1", "kind": "Node", "metadata": {{"name": "{node}"}}}}',
        )  # fmt: skip


def _meta(args: argparse.Namespace, plane: ControlPlane) -> dict[str, Any]:
    import kopf  # only for its version

    server = plane.kubectl("version", "-o", "json").stdout
    version = _json_field(server, "serverVersion", "gitVersion")
    return {
        "tasks": args.tasks,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kube_apiserver": version,
        "python": platform.python_version(),
        "kopf": getattr(kopf, "__version__", "?"),
        "cpus": os.cpu_count(),
        "host": platform.platform(),
    }


def _json_field(text: str, *path: str) -> str:
    import json

    try:
        value: Any = json.loads(text)
        for key in path:
            value = value[key]
        return str(value)
    except (ValueError, KeyError, TypeError):
        return "?"


def _rkt_env(args: argparse.Namespace) -> dict[str, str]:
    """Environment of everything that runs real rkt: the nspawn shim first on PATH (a host
    without systemd as PID 1, see helm/node/systemd-nspawn); nothing for the simulator."""
    if args.rkt is None:
        return {}
    return {"PATH": f"{NSPAWN_WRAPPER_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _node(args: argparse.Namespace, root: Path) -> SimNode:
    if args.rkt is not None:
        return SimNode(root, rkt_sim=args.rkt.resolve(), real=True, env=_rkt_env(args))
    return SimNode(root, rkt_sim=VENV_BIN / "rkt-sim")


def _rkt_phase(
    args: argparse.Namespace,
    workdir: Path,
    common: dict[str, Any],
    make: Any,
    name: str,
    started: list[Controller],
) -> PhaseResult:
    """One phase that runs rkt: its own node (store, image, counting wrapper), removed with
    all its pods right after the phase, so no phase pays for another's pods."""
    node = _node(args, workdir / f"node-{name}")
    try:
        spec = node.prepare()
        flags = node_flags(
            rkt_path=node.rkt_path,
            rkt_dir=node.rkt_dir,
            local_config=node.local_config,
            task_root=node.task_root,
        )
        controller: Controller = make(flags, node.marker)
        started.append(controller)
        return _phase(controller, spec, {**common, "rkt_calls": node.calls})
    finally:
        for controller in started:
            controller.stop(grace=5.0)
        log.info("removing the pods of %s", name)
        node.cleanup()


def _run_scale(args: argparse.Namespace, workdir: Path, out: Any) -> int:
    check_memory(args.running, real=args.rkt is not None)
    started: list[Controller] = []
    node = _node(args, workdir / "node-scale")
    networks = UserNetworks()
    with ControlPlane(args.assets, base_dir=workdir) as plane:
        try:
            _setup_cluster(plane, args.crds, [AGENT_NODE])
            api = plane.api_client()
            # rkt's `default` network (a /24) holds 253 pods, running or exited; the scale
            # tasks get a /16 of their own, where run-prepared reads it (real rkt and rkt-sim).
            net = f"{SCALE_NET_PREFIX}{os.getpid()}"
            networks.write(net, SCALE_NET)
            spec = {**node.prepare(), "net": [net]}
            flags = node_flags(
                rkt_path=node.rkt_path,
                rkt_dir=node.rkt_dir,
                local_config=node.local_config,
                task_root=node.task_root,
            )

            def make_agent(log_name: str) -> Controller:
                controller = agent_controller(
                    venv_bin=VENV_BIN,
                    node=AGENT_NODE,
                    rkt_flags=flags,
                    kubeconfig=plane.kubeconfig,
                    log=workdir / "logs" / log_name,
                    marker=node.marker,
                    extra=args.agent_arg,
                    env=_rkt_env(args),
                    profile=args.profile and args.profile.with_suffix(f".{log_name}.txt"),
                    memory_profile=args.profile_memory,
                )
                started.append(controller)
                return controller

            result = run_scale(
                make_agent=make_agent,
                node=node,
                api=api,
                kubectl=plane.kubectl,
                metrics=plane.metrics,
                workdir=workdir / "manifests",
                namespace=NAMESPACE,
                node_name=AGENT_NODE,
                spec=spec,
                tasks=args.tasks,
                running=args.running,
                idle=args.idle,
                timeout=args.timeout,
            )
            meta = _meta(args, plane)
            api.close()  # type: ignore[no-untyped-call]
        finally:
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
            for controller in started:
                controller.stop(grace=5.0)
            log.info("removing the pods of the scale node")
            node.cleanup()
            networks.remove()  # after the pods: their teardown reads the network's file
    runtime = f"real rkt {args.rkt}" if args.rkt else "rkt-sim"
    header = (
        f"rkt-operator agent at scale on {runtime}: kube-apiserver {meta['kube_apiserver']}, "
        f"Python {meta['python']}, kopf {meta['kopf']}, {meta['cpus']} CPUs"
    )
    print(render_scale(result, header), file=out, flush=True)
    return 0 if result.up_done == result.tasks and not result.duplicates else 1


def _run(args: argparse.Namespace, workdir: Path, out: Any) -> int:
    if args.scale:
        return _run_scale(args, workdir, out)
    nodes = ([] if args.no_agent else [AGENT_NODE]) + [
        f"bench-floor-{e}" for e in args.floor_engines
    ]
    started: list[Controller] = []
    with ControlPlane(args.assets, base_dir=workdir) as plane:
        try:
            log.info("control plane up in %.1fs", plane.startup_seconds or 0)
            _setup_cluster(plane, args.crds, nodes)
            api = plane.api_client()
            common: dict[str, Any] = {
                "api": api,
                "kubectl": plane.kubectl,
                "metrics": plane.metrics,
                "workdir": workdir / "manifests",
                "namespace": NAMESPACE,
                "tasks": args.tasks,
                "timeout": args.timeout,
            }
            results: list[PhaseResult] = []
            spec = service_spec(f"{IMAGE_NAME}:{IMAGE_VERSION}")
            env = _rkt_env(args)
            if not args.no_agent:

                def make_agent(flags: list[str], marker: str) -> Controller:
                    return agent_controller(
                        venv_bin=VENV_BIN,
                        node=AGENT_NODE,
                        rkt_flags=flags,
                        kubeconfig=plane.kubeconfig,
                        log=workdir / "logs" / "agent.log",
                        marker=marker,
                        extra=args.agent_arg,
                        env=env,
                        profile=args.profile,
                        memory_profile=args.profile_memory,
                    )

                results.append(_rkt_phase(args, workdir, common, make_agent, "agent", started))
            for engine in args.floor_engines:
                log_file = workdir / "logs" / f"floor-{engine}.log"
                if engine == "rkt":

                    def make_floor(
                        flags: list[str], marker: str, log_file: Path = log_file
                    ) -> Controller:
                        return floor_controller(
                            python=Path(sys.executable),
                            engine="rkt",
                            node="bench-floor-rkt",
                            kubeconfig=plane.kubeconfig,
                            log=log_file,
                            rkt_flags=flags,
                            marker=marker,
                            env=env,
                        )

                    results.append(
                        _rkt_phase(args, workdir, common, make_floor, "floor-rkt", started)
                    )
                    continue
                controller = floor_controller(
                    python=Path(sys.executable),
                    engine=engine,
                    node=f"bench-floor-{engine}",
                    kubeconfig=plane.kubeconfig,
                    log=log_file,
                )
                started.append(controller)
                results.append(_phase(controller, spec, common))
            meta = _meta(args, plane)
            api.close()  # type: ignore[no-untyped-call]
        finally:
            for s in (signal.SIGINT, signal.SIGTERM):  # the clean-up must run to its end
                signal.signal(s, signal.SIG_IGN)
            for controller in started:  # already stopped unless interrupted while stopping
                controller.stop(grace=5.0)
    runtime = f"real rkt {args.rkt}" if args.rkt else "rkt-sim"
    header = (
        f"rkt-operator agent benchmark on {runtime}: {args.tasks} tasks per batch, "
        f"kube-apiserver {meta['kube_apiserver']}, Python {meta['python']}, "
        f"kopf {meta['kopf']}, {meta['cpus']} CPUs"
    )
    print(render_text(results[0], results[1:], header), file=out, flush=True)
    if args.json == "-":
        print(render_json(results[0], results[1:], meta))
    elif args.json:
        Path(args.json).write_text(render_json(results[0], results[1:], meta) + "\n")
    incomplete = [r.name for r in results if r.running < r.tasks]
    return 1 if incomplete else 0


def _phase(controller: Controller, spec: dict[str, Any], common: dict[str, Any]) -> PhaseResult:
    log.info("phase %s: starting (%s)", controller.name, controller.log)
    result = run_phase(controller, spec=spec, **common)
    log.info(
        "phase %s: %d/%d Running in %.1fs", result.name, result.running, result.tasks,
        result.wall_seconds,
    )  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for s in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (`&`)
        signal.signal(s, _interrupt)
    if args.rkt is not None and os.geteuid() == 0:
        # rkt warns on every command without an "rkt" group; it is harmless, but noisy.
        subprocess.run(["groupadd", "-f", "rkt"], capture_output=True, check=False)
    workdir = Path(tempfile.mkdtemp(prefix="rkt-bench-"))
    out = sys.stderr if args.json == "-" else sys.stdout
    try:
        return _run(args, workdir, out)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
