"""The ``rkt-operator`` command.

- ``run``: the node agent (settings from flags and ``RKT_OPERATOR_*`` / ``NODE_NAME``);
- ``fingerprint``: probe this node's rkt and print the result as JSON;
- ``release-orphans``: drop the finalizer of tasks being deleted whose Node is gone
  (see ``rkt_operator.orphans``; ``--dry-run`` only lists them);
- ``exec NAMESPACE/NAME -- CMD...``, ``signal NAMESPACE/NAME SIGNAL``, ``stats NAMESPACE/NAME``,
  ``pods NAMESPACE/NAME``: node-local commands on a task's running pod (or, ``pods``, on all
  its pods) (``rkt_operator.nodecmds``), with the same settings flags as ``run``; ``exec``
  exits with the command's exit code; ``--uid`` confines them to one object;
- ``logs NAMESPACE/NAME``: a task's pod output on this node (``executor.logcmd``), with
  ``--tail``, ``--follow``, ``--previous``, ``--since``, ``--stderr``, ``--uid``;
- these node commands are what ``kubectl rkt`` (``rkt_operator.plugin``) runs in the
  node's agent container through the API server's ``pods/exec``;
- ``convert FILE...``: Nomad job files -> RktTask manifests (``rkt_operator.convert``);
- ``schedule``: the binder, one per cluster (leader-elected): binds RktTasks without
  ``spec.nodeName`` to a node (``rkt_operator.binder``);
- ``version``.

Output meant for people or scripts goes to ``sys.stdout`` explicitly; diagnostics go to
logging (stderr). Exit codes: 0 success, 1 failure, 2 usage or settings error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from rkt_operator import (
    __version__,
    errors,
    fingerprint,
    nodecmds,
    orphans,
    settings,
)
from rkt_operator.convert import command as convert_command
from rkt_operator.executor import logcmd
from rkt_operator.executor.service import Executor
from rkt_operator.model import refs
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import ClientInput

log = logging.getLogger("rkt_operator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rkt-operator", description="Runs RktTask resources as rkt pods on this node."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    settings.build_parser(sub.add_parser("run", help="run the node agent"))
    settings.build_parser(
        sub.add_parser("fingerprint", help="print this node's rkt fingerprint as JSON")
    )
    release = sub.add_parser(
        "release-orphans",
        help="drop the finalizer of tasks being deleted whose node no longer exists",
    )
    release.add_argument("--dry-run", action="store_true", help="only list them")
    release.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: usual)")
    exec_ = settings.build_parser(
        sub.add_parser("exec", help="run a command in a task's running pod on this node")
    )
    exec_.add_argument("task", metavar="NAMESPACE/NAME")
    _uid_flag(exec_)
    exec_.add_argument("--app", default=None, help="the app to enter (pods with several apps)")
    exec_.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="run the command on a pseudo-terminal (interactive shells; stderr then arrives "
        "on stdout); without it stdin is forwarded and stdout and stderr stay apart",
    )
    exec_.add_argument(
        "--end-with-stdin",
        action="store_true",
        help="standard input is only held open by the client (kubectl rkt exec without -i): "
        "the command gets no input, and it ends, with what it started in the pod, once standard "
        "input ends (when the client goes)",
    )
    exec_.add_argument(
        "--stdin-frames",
        action="store_true",
        help="standard input carries the client's input in frames (kubectl rkt exec -i: a "
        "4-byte big-endian length, then the bytes; length 0 ends the input): the command ends, "
        "with what it started in the pod, once standard input itself ends (when the client "
        "goes); not with --tty or --end-with-stdin",
    )
    exec_.add_argument("cmd", nargs="+", metavar="-- CMD", help="the command and its arguments")
    sig = settings.build_parser(
        sub.add_parser("signal", help="send a signal to the apps of a task's running pod")
    )
    sig.add_argument("task", metavar="NAMESPACE/NAME")
    _uid_flag(sig)
    sig.add_argument("signal", metavar="SIGNAL", help="HUP, SIGTERM, USR1, 10...")
    stats = settings.build_parser(
        sub.add_parser("stats", help="CPU and memory of a task's running pod, as JSON")
    )
    stats.add_argument("task", metavar="NAMESPACE/NAME")
    _uid_flag(stats)
    pods = settings.build_parser(
        sub.add_parser("pods", help="the task's pods on this node as rkt reports them, as JSON")
    )
    pods.add_argument("task", metavar="NAMESPACE/NAME")
    _uid_flag(pods)
    logs = settings.build_parser(
        sub.add_parser("logs", help="print the output of a task's pod on this node")
    )
    logs.add_argument("task", metavar="NAMESPACE/NAME", help="the RktTask")
    logs.add_argument("--stderr", action="store_true", help="the pod's stderr, not its stdout")
    logs.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    logs.add_argument("--follow", "-f", action="store_true", help="go on until the pod exits")
    logs.add_argument(
        "--previous",
        "-p",
        action="store_true",
        help="the output of the task's pod before the newest one (after a restart)",
    )
    logs.add_argument(
        "--since",
        default=None,
        metavar="DURATION",
        help="only log files written to within DURATION (30s, 5m, 1h30m); lines carry no "
        "timestamps, so a file is shown whole or not at all",
    )
    logs.add_argument(
        "--end-with-stdin",
        action="store_true",
        help="with --follow: stop following once standard input ends (kubectl rkt passes its "
        "session's input, which ends when its client goes, so the command does not outlive it)",
    )
    _uid_flag(logs)
    convert_command.add_parser(sub)
    settings.build_binder_parser(
        sub.add_parser("schedule", help="bind RktTasks without spec.nodeName to nodes")
    )
    sub.add_parser("version", help="print the version")
    return parser


def _uid_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uid",
        default=None,
        help="act only on pods of the RktTask object with this uid (refuse any other object "
        "of the same name); kubectl rkt passes the uid it read from the API server",
    )


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _fingerprint(agent: settings.Settings) -> int:
    result = asyncio.run(fingerprint.fingerprint(agent, RktCli(agent)))
    _write(
        json.dumps(
            {
                "detected": result.detected,
                "healthy": result.healthy,
                "description": result.description,
                "attributes": dict(result.attributes),
                "labels": fingerprint.node_labels(result),
            },
            indent=2,
            sort_keys=True,
        )
    )
    return 0 if result.healthy else 1


def _release_orphans(*, dry_run: bool, kubeconfig: str | None) -> int:
    from rkt_operator import kubeclient

    api = kubeclient.AdminApi(kubeclient.connect(kubeconfig, access=settings.in_cluster_access()))
    found = orphans.find_orphans(api.list_tasks(), api.list_node_names())
    failed = 0
    for orphan in found:
        if not orphan.deleting:
            _write(f"unbound {orphan.ref} node={orphan.node} (not being deleted: left alone)")
            continue
        if dry_run:
            _write(f"would release {orphan.ref} node={orphan.node}")
            continue
        task = {"metadata": {"namespace": orphan.namespace, "name": orphan.name}}
        try:
            fresh = api.get_task(orphan.namespace, orphan.name) or task
            released = api.drop_finalizer(fresh)
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            log.error("could not release %s: %s", orphan.ref, exc)
            failed += 1
            continue
        _write(f"{'released' if released else 'already released'} {orphan.ref} node={orphan.node}")
    return 1 if failed else 0


def _client_input(args: argparse.Namespace) -> ClientInput:
    """What ``exec``'s standard input is; ``ValueError`` for flags that exclude each other."""
    if args.stdin_frames and (args.tty or args.end_with_stdin):
        raise ValueError("--stdin-frames goes with neither --tty nor --end-with-stdin")
    if args.stdin_frames:
        return "frames"
    return "held" if args.end_with_stdin else "inherit"


def _node_command(args: argparse.Namespace, agent: settings.Settings) -> int:
    """exec / signal / stats on this node; errors go to stderr (exit 1, or 2 for usage)."""
    try:
        namespace, name = refs.parse_task_ref(args.task)
        signum = nodecmds.parse_signal(args.signal) if args.command == "signal" else None
        client_input = _client_input(args) if args.command == "exec" else "inherit"
    except ValueError as exc:
        sys.stderr.write(f"rkt-operator {args.command}: {exc}\n")
        return 2
    executor = Executor(settings=agent, rkt=RktCli(agent))
    uid = args.uid
    result: object
    try:
        if args.command == "exec":
            return nodecmds.exec_attached(
                executor, namespace, name, args.cmd, app=args.app, tty=args.tty, uid=uid,
                client_input=client_input,
            )  # fmt: skip
        if signum is not None:
            uuid = asyncio.run(nodecmds.send_signal(executor, namespace, name, signum, uid=uid))
            _write(f"sent {signum.name} to {namespace}/{name} (pod {uuid})")
            return 0
        if args.command == "pods":
            result = asyncio.run(nodecmds.task_pods(executor, namespace, name, uid=uid))
        else:
            result = asyncio.run(nodecmds.task_stats(executor, namespace, name, uid=uid))
    except errors.RktTaskError as exc:
        sys.stderr.write(f"rkt-operator {args.command}: {getattr(exc, 'message', exc)}\n")
        return 1
    _write(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _out(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def _input_ended() -> Callable[[], bool]:
    """A flag that turns true once standard input ends (EOF, or an error reading it): a
    daemon thread reads the input and drops it. Through ``kubectl exec --stdin`` the input ends
    when the session does, however its client went (Ctrl-C, killed, network gone)."""
    ended = threading.Event()

    def drain() -> None:
        try:
            while os.read(sys.stdin.fileno(), 65536):
                pass
        except (OSError, ValueError):
            pass
        ended.set()

    threading.Thread(target=drain, name="stdin-watch", daemon=True).start()
    return ended.is_set


def _logs(agent: settings.Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    stream = "stderr" if args.stderr else "stdout"
    stop = _input_ended() if args.follow and args.end_with_stdin else None
    try:
        since = None if args.since is None else logcmd.parse_since(args.since)
        job = logcmd.run(
            agent,
            args.task,
            stream=stream,
            tail=args.tail,
            follow=args.follow,
            previous=args.previous,
            since=since,
            uid=args.uid,
            write=_out,
            stop=stop,
        )
        return asyncio.run(job)
    except ValueError as exc:
        sys.stderr.write(f"rkt-operator: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # the reader went away: nothing left to show it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


def _schedule(args: argparse.Namespace) -> int:
    try:
        binder_settings = settings.load_binder(args)
    except ValueError as exc:
        sys.stderr.write(f"rkt-operator: {exc}\n")
        return 2
    logging.basicConfig(
        level=binder_settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    from rkt_operator import kubeclient
    from rkt_operator.binder.loop import Binder

    access = settings.in_cluster_access()
    binder = Binder(kubeclient.connect(binder_settings.kubeconfig, access=access), binder_settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: binder.stop())
    binder.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        _write(f"rkt-operator {__version__}")
        return 0
    if args.command == "convert":
        return convert_command.run(args, sys.stdin, sys.stdout, sys.stderr)
    if args.command == "schedule":
        return _schedule(args)
    if args.command == "release-orphans":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        return _release_orphans(dry_run=args.dry_run, kubeconfig=args.kubeconfig)
    try:
        agent = settings.load(args)
    except ValueError as exc:
        sys.stderr.write(f"rkt-operator: {exc}\n")
        return 2
    if args.command == "logs":
        return _logs(agent, args)
    if args.command in ("fingerprint", "exec", "signal", "stats", "pods"):
        logging.basicConfig(level=agent.log_level, format="%(levelname)s %(name)s %(message)s")
        if args.command != "fingerprint":
            return _node_command(args, agent)
        return _fingerprint(agent)
    if not agent.node_name:
        sys.stderr.write("rkt-operator: no node name: pass --node-name or set NODE_NAME\n")
        return 2
    _without_the_kubernetes_client()
    from rkt_operator import kopfapp, logconfig

    logconfig.setup_logging(agent.log_format, agent.log_level)
    kopfapp.run(agent)
    return 0


def _without_the_kubernetes_client() -> None:
    """Keep the ``kubernetes`` package out of the agent's process (call before kopf is
    imported). The agent never uses it (``kubeapi``), but kopf imports its ``client``
    whenever it is installed, only to recognise its model objects, which the agent never
    hands to kopf; that import costs 18 MiB. A ``None`` entry in ``sys.modules`` is how
    Python marks a module as not importable: kopf's ``import`` fails with
    ``ModuleNotFoundError`` and kopf carries on as where the package is not installed."""
    if "kubernetes" not in sys.modules:
        sys.modules["kubernetes"] = None  # type: ignore[assignment]
