"""What ``kubectl rkt`` does, decided without running anything: its arguments, the kubectl
command lines of each step, the choice of the agent pod and the messages of every failure.

The steps (``main`` runs them):

1. ``kubectl get rkttasks.rktoperator.io NAME -o json``: the task, read with the caller's
   credentials (so the caller may read it), its namespace, uid and ``spec.nodeName``;
2. for ``exec`` and ``signal``: ``kubectl auth can-i create rkttasks.rktoperator.io/NAME
   --subresource=exec|signal``, the operator's grant (see the README's trust model);
3. ``kubectl get pods`` in the agent namespace by the chart's labels on that node;
4. ``kubectl auth can-i create pods/POD --subresource=exec`` in the agent namespace;
5. ``kubectl exec`` into the agent container: ``rkt-operator CMD NAMESPACE/NAME --uid UID``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rkt_operator.model import api

TASK_RESOURCE = f"{api.PLURAL}.{api.GROUP}"
DEFAULT_AGENT_NAMESPACE = "rkt-operator"
# The chart's selector labels of the agent pods (the binder's pods carry another name).
DEFAULT_AGENT_SELECTOR = "app.kubernetes.io/name=rkt-operator"
DEFAULT_AGENT_CONTAINER = "agent"
# The chart's roles (named after a release called rkt-operator).
VIEWER_ROLE = "rkt-operator-task-viewer"
OPERATOR_ROLE = "rkt-operator-task-operator"
AGENT_EXEC_ROLE = "rkt-operator-agent-exec"
NODE_COMMAND = "rkt-operator"
COMMANDS = ("logs", "exec", "signal", "stats", "describe")
# exec and signal change what runs: the caller also needs the operator's grant.
OPERATOR_COMMANDS = ("exec", "signal")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?h)?(?:\d+(?:\.\d+)?m)?(?:\d+(?:\.\d+)?s)?")
_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]+)")?'
)


class PluginError(Exception):
    """A failure to report in kubectl's style (``error: ...``) with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Request:
    """One invocation of ``kubectl rkt``."""

    command: str
    name: str
    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    agent_namespace: str = DEFAULT_AGENT_NAMESPACE
    agent_selector: str = DEFAULT_AGENT_SELECTOR
    agent_container: str = DEFAULT_AGENT_CONTAINER
    # logs
    follow: bool = False
    tail: int | None = None
    previous: bool = False
    stderr: bool = False
    since: str | None = None
    # exec
    stdin: bool = False
    tty: bool = False
    app: str | None = None
    cmd: tuple[str, ...] = ()
    # signal
    signal: str | None = None


@dataclass(frozen=True)
class Task:
    """What the plugin needs of the RktTask it read."""

    namespace: str
    name: str
    uid: str
    node: str


# ----- arguments --------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, default: object) -> None:
    """kubectl's flags, accepted before and after the command (``default`` SUPPRESS on the
    commands, so a flag given before the command is not reset by them)."""
    parser.add_argument("-n", "--namespace", default=default, help="the task's namespace")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default, help="the kubeconfig file to use")
    parser.add_argument(
        "--agent-namespace",
        default=default,
        help=f"where the rkt-operator agents run (default {DEFAULT_AGENT_NAMESPACE})",
    )
    parser.add_argument(
        "--agent-selector",
        default=default,
        help=f"label selector of the agent pods (default {DEFAULT_AGENT_SELECTOR})",
    )
    parser.add_argument(
        "--agent-container",
        default=default,
        help=f"the agent pods' container (default {DEFAULT_AGENT_CONTAINER})",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl rkt",
        description="Logs, exec, signals, stats and description of an RktTask, run through "
        "the rkt-operator agent on the task's node (the API server's pods/exec).",
    )
    _common(top, default=None)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = argparse.ArgumentParser(add_help=False)
    _common(shared, default=argparse.SUPPRESS)

    logs = sub.add_parser("logs", parents=[shared], help="print the output of a task's pod")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="stream until the pod exits")
    logs.add_argument("--tail", type=int, default=None, metavar="N", help="the last N lines")
    logs.add_argument(
        "-p", "--previous", action="store_true", help="the pod before the current one"
    )
    logs.add_argument("--stderr", action="store_true", help="the pod's stderr, not its stdout")
    logs.add_argument(
        "--since",
        default=None,
        metavar="DURATION",
        help="only log files written within DURATION (5s, 2m, 1h); lines have no timestamps, "
        "so a whole file is shown or left out",
    )

    exec_ = sub.add_parser("exec", parents=[shared], help="run a command in a task's pod")
    exec_.add_argument("name", metavar="NAME")
    exec_.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    exec_.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    exec_.add_argument("--app", default=None, help="the app to enter (pods with several apps)")
    exec_.add_argument("cmd", nargs="+", metavar="-- CMD", help="the command and its arguments")

    sig = sub.add_parser("signal", parents=[shared], help="send a signal to a task's apps")
    sig.add_argument("name", metavar="NAME")
    sig.add_argument("signal", metavar="SIGNAL", help="HUP, SIGTERM, USR1, 10...")

    stats = sub.add_parser("stats", parents=[shared], help="CPU and memory of a task's pod")
    stats.add_argument("name", metavar="NAME")

    describe = sub.add_parser(
        "describe", parents=[shared], help="the task, its events and its pods as rkt sees them"
    )
    describe.add_argument("name", metavar="NAME")
    return top


def parse(argv: Sequence[str]) -> Request:
    """The request ``argv`` asks for; ``PluginError`` (exit 2) for a bad value. argparse
    itself exits 2 on unknown flags."""
    args = parser().parse_args(list(argv))
    values = vars(args)
    if values.get("tail") is not None and values["tail"] < 0:
        raise PluginError(f"--tail must not be negative: {values['tail']}", code=2)
    since = values.get("since")
    if since is not None and (not since.strip() or not _DURATION.fullmatch(since.strip())):
        raise PluginError(f"invalid --since {since!r}: use a duration such as 5s, 2m or 1h", 2)
    return Request(
        command=args.command,
        name=args.name,
        namespace=values.get("namespace"),
        context=values.get("context"),
        kubeconfig=values.get("kubeconfig"),
        agent_namespace=values.get("agent_namespace") or DEFAULT_AGENT_NAMESPACE,
        agent_selector=values.get("agent_selector") or DEFAULT_AGENT_SELECTOR,
        agent_container=values.get("agent_container") or DEFAULT_AGENT_CONTAINER,
        follow=bool(values.get("follow")),
        tail=values.get("tail"),
        previous=bool(values.get("previous")),
        stderr=bool(values.get("stderr")),
        since=since.strip() if since else None,
        stdin=bool(values.get("stdin")),
        tty=bool(values.get("tty")),
        app=values.get("app"),
        cmd=tuple(values.get("cmd") or ()),
        signal=values.get("signal"),
    )


# ----- kubectl command lines ------------------------------------------------------------------


def kubectl(req: Request) -> list[str]:
    """``kubectl`` with the caller's connection flags."""
    argv = ["kubectl"]
    if req.kubeconfig:
        argv.append(f"--kubeconfig={req.kubeconfig}")
    if req.context:
        argv.append(f"--context={req.context}")
    return argv


def get_task(req: Request) -> list[str]:
    argv = [*kubectl(req), "get", TASK_RESOURCE, req.name, "--output=json"]
    return [*argv, f"--namespace={req.namespace}"] if req.namespace else argv


def can_i_operate(req: Request, task: Task) -> list[str]:
    """Whether the caller holds the operator's grant on this task (exec, signal)."""
    return [
        *kubectl(req),
        "auth",
        "can-i",
        "create",
        f"{TASK_RESOURCE}/{task.name}",
        f"--subresource={req.command}",
        f"--namespace={task.namespace}",
    ]


def list_agents(req: Request, task: Task) -> list[str]:
    return [
        *kubectl(req),
        "get",
        "pods",
        f"--namespace={req.agent_namespace}",
        f"--selector={req.agent_selector}",
        f"--field-selector=spec.nodeName={task.node}",
        "--output=json",
    ]


def can_i_exec(req: Request, pod: str) -> list[str]:
    return [
        *kubectl(req),
        "auth",
        "can-i",
        "create",
        f"pods/{pod}",
        "--subresource=exec",
        f"--namespace={req.agent_namespace}",
    ]


def node_command(req: Request, task: Task) -> list[str]:
    """The node command run in the agent container (``pods`` for describe)."""
    ref = f"{task.namespace}/{task.name}"
    command = "pods" if req.command == "describe" else req.command
    argv = [NODE_COMMAND, command, ref, f"--uid={task.uid}"]
    if req.command == "logs":
        argv += ["--follow", "--end-with-stdin"] if req.follow else []
        argv += [f"--tail={req.tail}"] if req.tail is not None else []
        argv += ["--previous"] if req.previous else []
        argv += ["--stderr"] if req.stderr else []
        argv += [f"--since={req.since}"] if req.since else []
    elif req.command == "exec":
        argv += ["--tty"] if req.tty else []
        argv += ["--end-with-stdin"] if holds_input(req) else []
        argv += ["--stdin-frames"] if frames_input(req) else []
        argv += [f"--app={req.app}"] if req.app else []
        argv += ["--", *req.cmd]
    elif req.command == "signal":
        argv += ["--", req.signal or ""]
    return argv


def holds_input(req: Request) -> bool:
    """Whether kubectl's input is a pipe the plugin holds open and never writes to, rather
    than the plugin's own: for ``logs -f`` and for ``exec`` without ``-i``. The node command
    ends (``--end-with-stdin``: stops following; ends ``rkt enter`` and the command in the
    pod) once that input ends, which happens when the session ends however its client went:
    without it, the API server and the kubelet leave the remote command running."""
    if req.command == "exec":
        return not req.stdin
    return req.command == "logs" and req.follow


def frames_input(req: Request) -> bool:
    """Whether the plugin passes the caller's input to kubectl in frames (``frame``): for
    ``exec -i`` without a terminal. The node command (``--stdin-frames``) gives the command
    the input the frames carry and ends it at the frame that ends the input; the end of
    kubectl's input itself is then the end of the session, however its client went. (A
    terminal, ``-it``, hangs up instead.)"""
    return req.command == "exec" and req.stdin and not req.tty


def frame(data: bytes) -> bytes:
    """One frame of input as the node command reads it (``--stdin-frames``): a 4-byte
    big-endian length and the bytes; ``frame(b"")`` ends the input."""
    return len(data).to_bytes(4, "big") + data


def exec_in_agent(req: Request, pod: str, task: Task) -> list[str]:
    """``kubectl exec`` of the node command in the agent's container; ``-i``/``-t`` for
    ``exec -i``/``-i -t``, and ``-i`` alone for ``logs -f`` and ``exec`` without ``-i`` (see
    ``holds_input``; kubectl gives no terminal without input anyway: ``exec -t`` alone gets
    its terminal from the node command)."""
    flags = []
    if req.command == "exec" and req.stdin:
        flags += ["--stdin", "--tty"] if req.tty else ["--stdin"]
    flags += ["--stdin"] if holds_input(req) else []
    return [
        *kubectl(req),
        "exec",
        f"--namespace={req.agent_namespace}",
        pod,
        f"--container={req.agent_container}",
        *flags,
        "--",
        *node_command(req, task),
    ]


def describe_task(req: Request, task: Task) -> list[str]:
    return [
        *kubectl(req),
        "describe",
        TASK_RESOURCE,
        task.name,
        f"--namespace={task.namespace}",
    ]


# ----- what came back ---------------------------------------------------------------------------


def _where(req: Request) -> str:
    return f'in namespace "{req.namespace}"' if req.namespace else "in the current namespace"


def task_from(req: Request, output: str) -> Task:
    """The task in ``kubectl get -o json`` output; ``PluginError`` when it is not bound."""
    try:
        body = json.loads(output)
        meta = body["metadata"]
        task = Task(
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            uid=str(meta["uid"]),
            node=str((body.get("spec") or {}).get("nodeName") or ""),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PluginError(f"unexpected answer reading rkttask {req.name!r}: {exc}") from None
    if not task.node:
        raise PluginError(
            f'rkttask "{task.name}" in namespace "{task.namespace}" is not bound to a node yet '
            "(no spec.nodeName): no agent runs it; is the binder running, or set "
            "spec.nodeName?"
        )
    return task


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pick_agent(req: Request, task: Task, output: str) -> str:
    """The agent pod of the task's node in ``kubectl get pods -o json`` output: the running
    one (Ready first); ``PluginError`` when there is none."""
    try:
        items = json.loads(output).get("items") or []
    except (ValueError, AttributeError) as exc:
        raise PluginError(f"unexpected answer listing the agent pods: {exc}") from None
    pods = [p for p in items if not (p.get("metadata") or {}).get("deletionTimestamp")]
    pods = [p for p in pods if (p.get("spec") or {}).get("nodeName") == task.node] or pods
    if not pods:
        raise PluginError(
            f'no rkt-operator agent on node "{task.node}" (no pod labelled '
            f'{req.agent_selector} in namespace "{req.agent_namespace}" there): is the chart '
            "installed there (--agent-namespace), and does its DaemonSet run on that node?"
        )
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if not running:
        names = ", ".join(
            f"{p['metadata']['name']} ({(p.get('status') or {}).get('phase', 'Unknown')})"
            for p in pods
        )
        raise PluginError(f'the rkt-operator agent on node "{task.node}" is not running: {names}')
    running.sort(key=lambda p: (not _ready(p), p["metadata"]["name"]))
    return str(running[0]["metadata"]["name"])


def allowed(returncode: int, output: str) -> bool | None:
    """``kubectl auth can-i``'s answer: True, False, or None when it could not tell."""
    answer = output.strip().splitlines()[0].strip() if output.strip() else ""
    if returncode == 0 and answer == "yes":
        return True
    if answer.startswith("no"):
        return False
    return None


def _grant_hint(req: Request, resource: str, namespace: str | None) -> str:
    where = f' in namespace "{namespace}"' if namespace else ""
    if resource.split("/")[0] == TASK_RESOURCE:
        role = OPERATOR_ROLE if "/" in resource else VIEWER_ROLE
        return f"a RoleBinding to the ClusterRole {role}{where}"
    if resource.startswith("pods"):
        return f"a RoleBinding to the Role {AGENT_EXEC_ROLE}{where} (the agents' namespace)"
    return f"that permission{where}"


def denied(req: Request, verb: str, resource: str, namespace: str | None) -> PluginError:
    """The message for a permission the caller lacks, naming the verb and the resource."""
    where = f' in namespace "{namespace}"' if namespace else ""
    return PluginError(
        f'forbidden: kubectl rkt {req.command} needs "{verb} {resource}"{where}, which you '
        f"lack; an administrator can grant it with {_grant_hint(req, resource, namespace)}"
    )


def failure(req: Request, step: str, stderr: str) -> PluginError:
    """A failed kubectl step (``get-task``, ``list-agents``, ``can-i``, ``describe``,
    ``exec``) as the message to print."""
    text = stderr.strip()
    match = _FORBIDDEN.search(text)
    if "(Forbidden)" in text or match:
        if match:
            group = match["group"] or ""
            resource = match["resource"]
            if group and "/" in resource:
                base, _, subresource = resource.partition("/")
                resource = f"{base}.{group}/{subresource}"
            elif group:
                resource = f"{resource}.{group}"
            return denied(req, match["verb"], resource, match["namespace"])
        return PluginError(f"forbidden: {text}")
    if step == "get-task" and "(NotFound)" in text:
        return PluginError(f'rkttask "{req.name}" not found {_where(req)}')
    if step == "get-task" and "doesn't have a resource type" in text:
        return PluginError(
            f"the cluster does not serve {TASK_RESOURCE}: is rkt-operator's CRD installed? ({text})"
        )
    if text.startswith(("error:", "Error")):
        return PluginError(text.split(":", 1)[1].strip() if text.startswith("error:") else text)
    return PluginError(text or f"kubectl failed ({step})")


def _cell(value: object) -> str:
    if value is None or value == {}:
        return "<none>"
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in sorted(value.items()))
    return str(value)


def render_pods(task: Task, output: str) -> str:
    """The ``rkt-operator pods`` JSON as the table ``describe`` ends with."""
    try:
        pods = json.loads(output)
    except ValueError as exc:
        raise PluginError(f"unexpected answer from the agent: {exc}") from None
    head = f'Pods on node "{task.node}" (as rkt reports them):'
    if not pods:
        return f"{head} none\n"
    columns = (
        ("UUID", "uuid"),
        ("STATE", "state"),
        ("EXIT", "exitCode"),
        ("SIGNAL", "stopSignal"),
        ("IP", "ip"),
        ("PORTS", "ports"),
        ("GENERATION", "generation"),
        ("CREATED", "createdAt"),
        ("STARTED", "startedAt"),
        ("FINISHED", "finishedAt"),
    )
    rows = [[title for title, _ in columns]]
    rows += [[_cell(pod.get(key)) for _, key in columns] for pod in pods]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return head + "\n" + "\n".join("  " + line.rstrip() for line in lines) + "\n"
