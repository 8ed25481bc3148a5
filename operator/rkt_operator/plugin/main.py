"""``kubectl-rkt``: runs the steps ``plan`` decides, with kubectl. The only code of the plugin
that starts processes, and the only ones it starts are kubectl's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import IO

from rkt_operator.plugin import plan

KUBECTL_MISSING = "kubectl not found: kubectl rkt runs kubectl, which must be on PATH"


def capture(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run a kubectl step that answers (get, auth can-i): exit code, stdout, stderr."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        raise plan.PluginError(KUBECTL_MISSING) from None
    return done.returncode, done.stdout, done.stderr


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _send_frames(source: int, sink: IO[bytes]) -> None:
    """This process's input to kubectl in frames (``plan.frame``), then the end-of-input
    frame; the pipe stays open after it (``attach`` closes it when kubectl ends)."""
    try:
        while data := os.read(source, 65536):
            sink.write(plan.frame(data))
            sink.flush()
        sink.write(plan.frame(b""))
        sink.flush()
    except (OSError, ValueError):  # kubectl went (or attach closed the pipe)
        pass


def attach(argv: Sequence[str], *, hold_input: bool = False, frame_input: bool = False) -> int:
    """Run kubectl on this process's stdin, stdout, stderr and terminal; its exit code (that
    of the remote command, for ``kubectl exec``). SIGINT, SIGTERM and SIGHUP are passed on to
    kubectl, which ends the session (a Ctrl-C reaches both anyway: same process group); this
    process waits for it meanwhile. ``hold_input``: kubectl's stdin is instead a pipe this
    process holds open, unwritten, until kubectl ends (``plan.holds_input``); ``frame_input``:
    a pipe that carries this process's input in frames and stays open until kubectl ends
    (``plan.frames_input``)."""
    piped = hold_input or frame_input
    try:
        child = subprocess.Popen(list(argv), stdin=subprocess.PIPE if piped else None)
    except FileNotFoundError:
        raise plan.PluginError(KUBECTL_MISSING) from None
    if frame_input and child.stdin is not None:
        threading.Thread(
            target=_send_frames, args=(sys.stdin.fileno(), child.stdin), daemon=True
        ).start()

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.stdin is not None:
            with contextlib.suppress(OSError):  # kubectl is gone: unsent frames go with it
                child.stdin.close()


def _require(req: plan.Request, argv: list[str], verb: str, resource: str, ns: str) -> None:
    code, out, err = capture(argv)
    answer = plan.allowed(code, out)
    if answer is None:
        raise plan.failure(req, "can-i", err or out)
    if not answer:
        raise plan.denied(req, verb, resource, ns)


def run(req: plan.Request) -> int:
    """One ``kubectl rkt`` command; its exit code."""
    code, out, err = capture(plan.get_task(req))
    if code != 0:
        raise plan.failure(req, "get-task", err)
    task = plan.task_from(req, out)
    if req.command in plan.OPERATOR_COMMANDS:
        resource = f"{plan.TASK_RESOURCE}/{req.command}"
        _require(req, plan.can_i_operate(req, task), "create", resource, task.namespace)
    code, out, err = capture(plan.list_agents(req, task))
    if code != 0:
        raise plan.failure(req, "list-agents", err)
    pod = plan.pick_agent(req, task, out)
    _require(req, plan.can_i_exec(req, pod), "create", "pods/exec", req.agent_namespace)
    if req.command != "describe":
        return attach(
            plan.exec_in_agent(req, pod, task),
            hold_input=plan.holds_input(req),
            frame_input=plan.frames_input(req),
        )
    code = attach(plan.describe_task(req, task))
    if code != 0:
        return code
    code, out, err = capture(plan.exec_in_agent(req, pod, task))
    if code != 0:
        raise plan.failure(req, "exec", err)
    sys.stdout.write("\n" + plan.render_pods(task, out))
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        req = plan.parse(sys.argv[1:] if argv is None else argv)
        return run(req)
    except plan.PluginError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
