"""``kubectl rkt``'s decisions (``rkt_operator.plugin.plan``): its arguments, the kubectl
command lines of each step, the choice of the agent pod, and its messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rkt_operator.plugin import plan
from rkt_operator.plugin.plan import PluginError, Request, Task
from rkt_operator.rkt import attached

TASK = Task(
    namespace="apps", name="kv-server", uid="1f0e6a52-0000-4000-8000-00000000abcd", node="n1"
)
UID = f"--uid={TASK.uid}"


def req(*argv: str) -> Request:
    return plan.parse(argv)


def test_kubectl_flags_before_or_after_the_command() -> None:
    after = req("logs", "kv-server", "-n", "apps", "--context=c1", "--kubeconfig", "/k")
    before = req("-n", "apps", "--context=c1", "--kubeconfig=/k", "logs", "kv-server")
    for r in (after, before):
        assert (r.namespace, r.context, r.kubeconfig) == ("apps", "c1", "/k")
        assert plan.get_task(r) == [
            "kubectl", "--kubeconfig=/k", "--context=c1", "get", "rkttasks.rktoperator.io",
            "kv-server", "--output=json", "--namespace=apps",
        ]  # fmt: skip
    # Without -n, kubectl's own default (the context's namespace) applies.
    assert plan.get_task(req("stats", "web")) == [
        "kubectl", "get", "rkttasks.rktoperator.io", "web", "--output=json",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "node_tail"),
    [
        (["logs", "kv-server"], []),
        (["logs", "kv-server", "-f", "--tail", "5"], ["--follow", "--end-with-stdin", "--tail=5"]),
        (["logs", "kv-server", "--tail=0"], ["--tail=0"]),
        (["logs", "kv-server", "-p", "--stderr"], ["--previous", "--stderr"]),
        (["logs", "kv-server", "--since", "1h30m"], ["--since=1h30m"]),
        (["stats", "kv-server"], []),
        (["signal", "kv-server", "HUP"], ["--", "HUP"]),
        (["exec", "kv-server", "--", "cat", "-n"], ["--end-with-stdin", "--", "cat", "-n"]),
        (["exec", "kv-server", "-i", "--", "cat", "-n"], ["--stdin-frames", "--", "cat", "-n"]),
        (["exec", "kv-server", "-it", "--", "/bin/sh"], ["--tty", "--", "/bin/sh"]),
        (["exec", "kv-server", "-t", "--", "top"], ["--tty", "--end-with-stdin", "--", "top"]),
        (
            ["exec", "kv-server", "--app=web", "--", "ls", "--", "-x"],
            ["--end-with-stdin", "--app=web", "--", "ls", "--", "-x"],
        ),
    ],
)
def test_node_command_per_request(argv: list[str], node_tail: list[str]) -> None:
    r = req(*argv)
    assert plan.node_command(r, TASK) == [
        "rkt-operator",
        argv[0],
        "apps/kv-server",
        UID,
        *node_tail,
    ]


def test_describe_asks_the_node_for_the_tasks_pods() -> None:
    r = req("describe", "kv-server", "-n", "apps")
    assert plan.node_command(r, TASK) == ["rkt-operator", "pods", "apps/kv-server", UID]
    assert plan.describe_task(r, TASK) == [
        "kubectl", "describe", "rkttasks.rktoperator.io", "kv-server", "--namespace=apps",
    ]  # fmt: skip


def test_exec_in_the_agent_container_passes_stdin_and_tty_only_for_exec() -> None:
    r = req("exec", "kv-server", "-i", "-t", "--agent-namespace=ops", "--", "/bin/sh")
    assert plan.exec_in_agent(r, "agent-x", TASK) == [
        "kubectl", "exec", "--namespace=ops", "agent-x", "--container=agent", "--stdin", "--tty",
        "--", "rkt-operator", "exec", "apps/kv-server", UID, "--tty", "--", "/bin/sh",
    ]  # fmt: skip
    r = req("exec", "kv-server", "-i", "--", "cat")
    assert plan.exec_in_agent(r, "a", TASK)[:7] == [
        "kubectl", "exec", "--namespace=rkt-operator", "a", "--container=agent", "--stdin", "--",
    ]  # fmt: skip
    r = req("logs", "kv-server", "--agent-container=main")
    assert plan.exec_in_agent(r, "a", TASK)[:6] == [
        "kubectl", "exec", "--namespace=rkt-operator", "a", "--container=main", "--",
    ]  # fmt: skip
    assert not plan.holds_input(r)
    # logs -f: kubectl's input is the plugin's unwritten pipe, whose end (the session's end,
    # however the client went) ends the node command following the log.
    r = req("logs", "kv-server", "-f")
    assert plan.holds_input(r)
    assert plan.exec_in_agent(r, "a", TASK) == [
        "kubectl", "exec", "--namespace=rkt-operator", "a", "--container=agent", "--stdin",
        "--", "rkt-operator", "logs", "apps/kv-server", UID, "--follow", "--end-with-stdin",
    ]  # fmt: skip
    assert not plan.holds_input(req("exec", "kv-server", "-i", "--", "cat"))
    assert not plan.holds_input(req("exec", "kv-server", "-it", "--", "sh"))


@pytest.mark.parametrize(
    ("flags", "kubectl_flags", "node_flags"),
    [
        # No input for the command: kubectl's input is the plugin's unwritten pipe, whose end
        # (the session's, however the client went) ends the node command and what it started.
        ([], ["--stdin"], ["--end-with-stdin"]),
        # -t alone: kubectl gives no terminal without input; the node command makes the pod's.
        (["-t"], ["--stdin"], ["--tty", "--end-with-stdin"]),
        # The caller's input goes to the command in frames, the last one ending it: the end
        # of kubectl's input itself is then the client's.
        (["-i"], ["--stdin"], ["--stdin-frames"]),
        # A terminal: the client going hangs it up.
        (["-i", "-t"], ["--stdin", "--tty"], ["--tty"]),
    ],
)
def test_exec_holds_kubectls_input_open_unless_the_caller_gives_input(
    flags: list[str], kubectl_flags: list[str], node_flags: list[str]
) -> None:
    r = req("exec", "kv-server", *flags, "--", "sleep", "9")
    assert plan.holds_input(r) is ("-i" not in flags)
    assert plan.frames_input(r) is (flags == ["-i"])
    assert plan.exec_in_agent(r, "a", TASK) == [
        "kubectl", "exec", "--namespace=rkt-operator", "a", "--container=agent", *kubectl_flags,
        "--", "rkt-operator", "exec", "apps/kv-server", UID, *node_flags, "--", "sleep", "9",
    ]  # fmt: skip


def test_agent_lookup_and_permission_checks() -> None:
    r = req("exec", "kv-server", "--context=c", "--agent-selector=app=x", "--", "id")
    assert plan.list_agents(r, TASK) == [
        "kubectl", "--context=c", "get", "pods", "--namespace=rkt-operator", "--selector=app=x",
        "--field-selector=spec.nodeName=n1", "--output=json",
    ]  # fmt: skip
    assert plan.can_i_exec(r, "agent-x") == [
        "kubectl", "--context=c", "auth", "can-i", "create", "pods/agent-x",
        "--subresource=exec", "--namespace=rkt-operator",
    ]  # fmt: skip
    assert plan.can_i_operate(r, TASK) == [
        "kubectl", "--context=c", "auth", "can-i", "create",
        "rkttasks.rktoperator.io/kv-server", "--subresource=exec", "--namespace=apps",
    ]  # fmt: skip
    assert plan.OPERATOR_COMMANDS == ("exec", "signal")


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["logs", "x", "--tail=-1"], "--tail must not be negative"),
        (["logs", "x", "--since=yesterday"], "invalid --since"),
        (["logs", "x", "--since="], "invalid --since"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], complaint: str) -> None:
    with pytest.raises(PluginError, match=complaint) as info:
        plan.parse(argv)
    assert info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [[], ["logs"], ["exec", "x"], ["signal", "x"], ["frobnicate", "x"], ["logs", "x", "--nope"]],
)
def test_argparse_refuses_incomplete_commands(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        plan.parse(argv)
    assert info.value.code == 2


def _task(node: str | None) -> str:
    spec: dict[str, Any] = {"image": "x"}
    if node is not None:
        spec["nodeName"] = node
    return json.dumps(
        {"metadata": {"namespace": "apps", "name": "kv-server", "uid": TASK.uid}, "spec": spec}
    )


def test_task_facts_and_an_unbound_task() -> None:
    r = req("logs", "kv-server")
    assert plan.task_from(r, _task("n1")) == TASK
    for node in (None, ""):
        with pytest.raises(
            PluginError, match=r'rkttask "kv-server" in namespace "apps" is not bound'
        ):
            plan.task_from(r, _task(node))
    with pytest.raises(PluginError, match="unexpected answer"):
        plan.task_from(r, "{}")


def _pod(
    name: str, phase: str, *, node: str = "n1", ready: bool = True, deleting: bool = False
) -> Any:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}
    return {"metadata": meta, "spec": {"nodeName": node}, "status": status}


def _pods(*pods: Any) -> str:
    return json.dumps({"items": list(pods)})


def test_pick_the_running_agent_of_the_node() -> None:
    r = req("logs", "kv-server")
    assert plan.pick_agent(r, TASK, _pods(_pod("a", "Running"))) == "a"
    # A rolling update: the new pod Running but not Ready yet, the old one terminating.
    picked = plan.pick_agent(
        r, TASK, _pods(_pod("old", "Running", deleting=True), _pod("new", "Running", ready=False))
    )
    assert picked == "new"
    assert (
        plan.pick_agent(r, TASK, _pods(_pod("b", "Running", ready=False), _pod("c", "Running")))
        == "c"
    )
    with pytest.raises(PluginError, match=r'no rkt-operator agent on node "n1" .*"rkt-operator"'):
        plan.pick_agent(r, TASK, _pods())
    with pytest.raises(PluginError, match=r'agent on node "n1" is not running: a \(Pending\)'):
        plan.pick_agent(r, TASK, _pods(_pod("a", "Pending")))


def test_can_i_answers() -> None:
    assert plan.allowed(0, "yes\n") is True
    assert plan.allowed(1, "no\n") is False
    assert plan.allowed(1, "no - RBAC: ...\n") is False
    assert plan.allowed(1, "") is None


def test_forbidden_answers_name_the_verb_resource_and_the_role_to_ask_for() -> None:
    r = req("logs", "kv-server", "-n", "apps")
    stderr = (
        'Error from server (Forbidden): rkttasks.rktoperator.io "kv-server" is forbidden: User '
        '"alice" cannot get resource "rkttasks" in API group "rktoperator.io" in the namespace '
        '"apps"\n'
    )
    message = plan.failure(r, "get-task", stderr).message
    assert message == (
        'forbidden: kubectl rkt logs needs "get rkttasks.rktoperator.io" in namespace "apps", '
        "which you lack; an administrator can grant it with a RoleBinding to the ClusterRole "
        'rkt-operator-task-viewer in namespace "apps"'
    )
    stderr = (
        'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:x:alice" '
        'cannot list resource "pods" in API group "" in the namespace "rkt-operator"'
    )
    message = plan.failure(r, "list-agents", stderr).message
    assert 'needs "list pods" in namespace "rkt-operator"' in message
    assert "the Role rkt-operator-agent-exec" in message
    message = plan.denied(r, "create", "pods/exec", "rkt-operator").message
    assert 'kubectl rkt logs needs "create pods/exec" in namespace "rkt-operator"' in message
    assert "Role rkt-operator-agent-exec" in message
    r = req("signal", "kv-server", "TERM")
    message = plan.denied(r, "create", "rkttasks.rktoperator.io/signal", "apps").message
    assert 'needs "create rkttasks.rktoperator.io/signal" in namespace "apps"' in message
    assert "ClusterRole rkt-operator-task-operator" in message


def test_other_failures_in_kubectls_words() -> None:
    r = req("logs", "kv-server", "-n", "apps")
    missing = 'Error from server (NotFound): rkttasks.rktoperator.io "kv-server" not found'
    assert plan.failure(r, "get-task", missing).message == (
        'rkttask "kv-server" not found in namespace "apps"'
    )
    assert plan.failure(req("logs", "x"), "get-task", missing).message == (
        'rkttask "x" not found in the current namespace'
    )
    no_crd = 'error: the server doesn\'t have a resource type "rkttasks"'
    assert "is rkt-operator's CRD installed?" in plan.failure(r, "get-task", no_crd).message
    down = "error: dial tcp 127.0.0.1:1: connect: connection refused"
    assert plan.failure(r, "list-agents", down).message == (
        "dial tcp 127.0.0.1:1: connect: connection refused"
    )
    assert plan.failure(r, "can-i", "").message == "kubectl failed (can-i)"


def test_describe_renders_the_pods_as_rkt_reports_them() -> None:
    pods = [
        {
            "uuid": "u-new", "state": "running", "uid": TASK.uid, "generation": 2,
            "exitCode": None, "stopSignal": None, "ip": "172.16.28.5",
            "ports": {"http": 8080}, "createdAt": "2026-12-03T06:00:00+00:00",
            "startedAt": "2026-12-03T06:00:01+00:00", "finishedAt": None,
        },
        {
            "uuid": "u-old", "state": "exited", "uid": TASK.uid, "generation": 1,
            "exitCode": 3, "stopSignal": None, "ip": None, "ports": {},
            "createdAt": None, "startedAt": None, "finishedAt": None,
        },
    ]  # fmt: skip
    lines = plan.render_pods(TASK, json.dumps(pods)).splitlines()
    assert lines[0] == 'Pods on node "n1" (as rkt reports them):'
    assert lines[1].split() == [
        "UUID", "STATE", "EXIT", "SIGNAL", "IP", "PORTS", "GENERATION", "CREATED", "STARTED",
        "FINISHED",
    ]  # fmt: skip
    assert lines[2].split()[:7] == [
        "u-new",
        "running",
        "<none>",
        "<none>",
        "172.16.28.5",
        "http:8080",
        "2",
    ]
    assert lines[3].split()[:7] == ["u-old", "exited", "3", "<none>", "<none>", "<none>", "1"]
    assert plan.render_pods(TASK, "[]") == 'Pods on node "n1" (as rkt reports them): none\n'


@pytest.mark.parametrize(
    "chunks", [[b"hello\n"], [b"a", b"", b"b"], [bytes(range(256)) * 300, b"\x00\x00\x00\x00"]]
)
def test_input_frames_of_the_plugin_decode_on_the_node_whatever_the_reads(
    chunks: list[bytes],
) -> None:
    """``kubectl rkt exec -i``: what the plugin frames, the node command (``--stdin-frames``)
    gets back byte for byte, however the stream is cut into reads, and then the end of input
    (b""); a length no plugin sends is refused."""
    stream = b"".join(plan.frame(c) for c in chunks if c) + plan.frame(b"")
    for step in (1, 3, 4096, len(stream)):
        frames = attached.Frames()
        out = []
        for i in range(0, len(stream), step):
            out += frames.feed(stream[i : i + step])
        assert out == [c for c in chunks if c] + [b""]
        assert plan.frame(b"x") == attached.frame(b"x") == b"\x00\x00\x00\x01x"
    with pytest.raises(ValueError, match="input frame of"):
        attached.Frames().feed((attached.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
