"""Chaos (issue 16): N tasks on one node while everything that can go wrong does, then the
checks that must hold once it stops.

What goes wrong, at random points (seeded, ``--chaos-seed``): the agent is SIGKILLed and
started again; kube-apiserver is stopped and started again; rkt fails, hangs, prints garbage
and crashes (rkt-sim's fault injection, on ``prepare``, ``list``, ``status`` and
``run-prepared``); apps are SIGKILLed from outside. What must hold afterwards:

- 0 lost tasks: every task is Running, with ``status.uuid`` a running pod of that task;
- 0 duplicate pods: one live pod per task;
- restarts counted: each task's ``status.restarts`` equals the number of its apps killed
  from outside (nothing else ends a pod here; a start that failed is no restart);
- nothing left after deleting all tasks: no pod, no task directory;
- no Secret value in the agent's log, the statuses or the events.

- every restart has exactly one ``Restarting`` event (``status.restartEventsPosted`` equal
  to ``status.restarts``, and the events the API server holds: one per restart number).

``make test`` runs a small variant (``--chaos-tasks``, default 6); ``make chaos N=100`` a
large one. The figures are written as one JSON line to ``--chaos-report`` (default: the
test's temporary directory) and to the terminal.

``test_chaos_real_rkt`` is the same on REAL rkt (the ``rkt`` tier: run in CI, skipped with
one line elsewhere without rkt), with fewer tasks (``--chaos-real-tasks``, default 4). rkt
cannot inject faults itself: the agent runs it through a wrapper that applies the same
fault file as rkt-sim (``rkt_sim.faults``: fail, hang, garbage, crash, before the real
command runs) and otherwise executes the real rkt; apps are killed from outside, pods get
real network namespaces, veths, NAT rules and overlay mounts, and nothing of them may be
left on the host afterwards.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from agentlib import BIN, Agent, apply, events, task

import realrkt
from rkt_devkit.aci import build_aci
from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import WaitTimeout, unique_name, wait_for

pytestmark = pytest.mark.k8s

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"
SECRET_KEY = "token"
APP_SECONDS = "100003"  # the apps' sleep: finds their processes (no other test uses it)
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
RESTART_NUMBER = re.compile(r"\(restart (\d+)\)")


@pytest.fixture(scope="module")
def plane(kubebuilder_assets: Path) -> Iterator[ControlPlane]:
    # kube-apiserver is restarted here: a control plane of its own, never the session's
    with ControlPlane(kubebuilder_assets) as cp:
        cp.apply_crds(REPO_CRDS)
        yield cp


def _faults(rng: random.Random, hang: float = 30) -> dict[str, list[dict[str, Any]]]:
    """A fresh batch of rkt faults: each kind once or twice, in a random order."""
    prepare = [
        {"action": "fail", "stderr": "prepare: cannot acquire lock on the store", "times": 2},
        {"action": "hang", "seconds": hang},  # killed at --rkt-timeout-seconds
        {"action": "garbage", "stdout": "no uuid here\n"},
        {"action": "crash"},
    ]
    rng.shuffle(prepare)
    return {
        "prepare": prepare,
        "list": [{"action": "garbage"}, {"action": "fail", "times": rng.randint(1, 2)}],
        "status": [{"action": "crash"}, {"action": "fail"}],
        "run-prepared": [{"action": "fail", "stderr": "run-prepared: stage1 did not start"}],
    }


def _arm(node: SimNode, faults: dict[str, list[dict[str, Any]]]) -> None:
    (node.rkt_dir / ".sim-faults.json").write_text(json.dumps(faults))


def _pods(node: SimNode) -> list[dict[str, Any]]:
    """Every pod of the node's store as its rkt lists it (once the faults are off)."""
    argv = [str(node.rkt_sim), f"--dir={node.rkt_dir}", f"--local-config={node.local_config}"]
    done = subprocess.run(
        [*argv, "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": node.path_env, "LANG": "C.UTF-8"},
    )
    return json.loads(done.stdout or "[]") or []


def _owner(pod: dict[str, Any]) -> str | None:
    """The task UID stamped on a listed pod (on its app, where --user-annotation puts it)."""
    for app in pod.get("apps") or []:
        uid = (app.get("user_annotations") or {}).get("rktoperator.io/uid")
        if uid:
            return str(uid)
    uid = (pod.get("user_annotations") or {}).get("rktoperator.io/uid")
    return str(uid) if uid else None


def _kill_app(node: SimNode, uuid: str) -> bool:
    """SIGKILL the app process of pod ``uuid`` from outside (its stage1 survives and
    records the exit). True when an app was killed."""
    run = node.rkt_dir / "pods" / "run" / uuid
    apps: list[psutil.Process] = []
    for name in ("pid", "ppid"):  # stage1's pid, as rkt (and rkt-sim) record it
        try:
            stage1 = psutil.Process(int((run / name).read_text().strip()))
            apps = [
                p for p in stage1.children(recursive=True)
                if p.cmdline() == ["/bin/sleep", APP_SECONDS]
            ]  # fmt: skip
        except (OSError, ValueError, psutil.Error):
            continue
        if apps:
            break
    killed = False
    for app in apps:
        try:
            app.send_signal(signal.SIGKILL)
            killed = True
        except psutil.Error:
            pass
    return killed


def _tasks(plane: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    done = plane.kubectl("get", "rkttasks", f"--namespace={namespace}", "-o", "json")
    return {o["metadata"]["name"]: o for o in json.loads(done.stdout)["items"]}


def _options(request: pytest.FixtureRequest, tmp_path: Path, tasks: str) -> tuple[int, int, Path]:
    n_tasks = int(request.config.getoption(tasks))
    seed = int(request.config.getoption("--chaos-seed") or time.time_ns() % 10**6)
    report_path = Path(request.config.getoption("--chaos-report") or tmp_path / "chaos.json")
    return n_tasks, seed, report_path


def test_chaos(plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    n_tasks, seed, report_path = _options(request, tmp_path, "--chaos-tasks")
    node = SimNode(name=unique_name("chaos", max_length=30), root=tmp_path / "node",
                   bin_dir=Path(sys.executable).parent)  # fmt: skip
    node.prepare()
    agent = Agent(
        node=node,
        kubeconfig=plane.kubeconfig,
        extra=("--rkt-timeout-seconds=5", "--watch-stale-seconds=20"),
    )
    _chaos(plane, node, agent, tmp_path, n_tasks=n_tasks, seed=seed, report_path=report_path)


@pytest.mark.rkt
@pytest.mark.timeout(1200)  # real rkt converges in minutes on a loaded 2-core host
def test_chaos_real_rkt(
    plane: ControlPlane,
    real_rkt: str,
    host_left_clean: None,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    n_tasks, seed, report_path = _options(request, tmp_path, "--chaos-real-tasks")
    wrapper = realrkt.with_faults(tmp_path / "rkt-with-faults", real_rkt)
    shim = None if realrkt.systemd_is_pid1() else realrkt.NSPAWN_SHIM_DIR
    node = SimNode(name=unique_name("chaos-real", max_length=30), root=tmp_path / "node",
                   bin_dir=BIN, real_rkt=wrapper, nspawn_dir=shim)  # fmt: skip
    node.prepare()
    agent = Agent(
        node=node,
        kubeconfig=plane.kubeconfig,
        # real rkt prepares and launches in seconds on a loaded host: a longer rkt deadline
        extra=(
            "--rkt-timeout-seconds=30",
            "--watch-stale-seconds=20",
            "--log-level=DEBUG",  # few tasks: every decision in the log, to explain a failure
            *([f"--extra-path={shim}"] if shim else []),
        ),
        env_extra={"PATH": node.path_env},
    )
    seen: set[str] = set()
    _chaos(
        plane, node, agent, tmp_path, n_tasks=n_tasks, seed=seed, report_path=report_path,
        hang=60, settle=300, seen=seen,
    )  # fmt: skip
    # Every pod the run made is gone from the host too: no overlay mount, no NAT rule of it
    # (the session's host_left_clean adds network namespaces and veths).
    mounts = Path("/proc/self/mountinfo").read_text()
    nat = subprocess.run(
        ["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True, check=False
    ).stdout
    traces = [u for u in seen if u in mounts or u in nat]
    assert traces == [], f"pods of the run left mounts or NAT rules behind: {traces}"


def _chaos(
    plane: ControlPlane,
    node: SimNode,
    agent: Agent,
    tmp_path: Path,
    *,
    n_tasks: int,
    seed: int,
    report_path: Path,
    hang: float = 30,
    settle: float = 0,
    seen: set[str] | None = None,
) -> None:
    """The chaos run and its checks on ``node`` with ``agent`` (not started yet). ``hang``:
    how long a hanging rkt hangs; ``settle``: the least time allowed to converge; ``seen``
    collects the UUID of every pod listed after the run."""
    rng = random.Random(seed)  # noqa: S311 (reproducible chaos, not cryptography)
    started = time.monotonic()
    image = build_aci(tmp_path / "sleeper.aci", name="example.com/sleeper",
                      exec=("/bin/sleep", APP_SECONDS))  # fmt: skip
    namespace = unique_name("chaos")
    kubectl = plane.kubectl
    kubectl("create", "namespace", namespace)
    secret = f"chaos-s3cret-{rng.getrandbits(64):016x}"
    kubectl("create", "secret", "generic", "creds", f"--namespace={namespace}",
            f"--from-literal={SECRET_KEY}={secret}")  # fmt: skip
    names = [f"t{i:03d}" for i in range(n_tasks)]
    kills: Counter[str] = Counter()
    figures: dict[str, Any] = {"seed": seed, "tasks": n_tasks, "rkt": str(node.rkt_sim)}
    _arm(node, _faults(rng, hang))
    agent.start()
    try:
        for i, name in enumerate(names):
            spec: dict[str, Any] = {}
            if i % 3 == 0:
                ref = {"secretKeyRef": {"name": "creds", "key": SECRET_KEY}}
                spec["env"] = [{"name": "TOKEN", "valueFrom": ref}]
            apply(kubectl, namespace, task(name, node.name, image, **spec))

        def some_running() -> bool | None:
            objs = _tasks(plane, namespace).values()
            up = sum(1 for o in objs if (o.get("status") or {}).get("phase") == "Running")
            return True if up >= max(1, n_tasks // 2) else None

        # the first starts meet the first faults; half the tasks run before the rest begins
        wait_for(some_running, timeout=120 + 2 * n_tasks, interval=1, what="half the tasks")
        figures["first_half_running_seconds"] = round(time.monotonic() - started, 1)

        # -- chaos: a dozen actions at least, more with more tasks --------------------------
        actions = Counter[str]()
        killed_pods: set[str] = set()
        rounds = max(12, 2 * n_tasks // 3)
        api_down_at = rng.randint(rounds // 3, 2 * rounds // 3)
        for step in range(rounds):
            time.sleep(rng.uniform(0.2, 2.0))
            if step == api_down_at:
                plane.stop_apiserver(kill=rng.random() < 0.5)
                time.sleep(rng.uniform(2, 6))
                plane.start_apiserver()
                actions["apiserver restarts"] += 1
                continue
            what = rng.choice(["agent", "app", "app", "app", "faults"])
            if what == "agent":
                agent.kill()
                time.sleep(rng.uniform(0, 1.5))
                agent.start()
                actions["agent SIGKILLs"] += 1
            elif what == "faults":
                _arm(node, _faults(rng, hang))
                actions["rkt fault batches"] += 1
            else:
                # a pod the status names as running (rkt's own listing may be faulty now)
                running = [
                    (o["status"]["uuid"], o["metadata"]["uid"])
                    for o in _tasks(plane, namespace).values()
                    if (o.get("status") or {}).get("phase") == "Running"
                    and o["status"].get("uuid") not in killed_pods
                ]
                actions["app kill tries"] += 1
                if running:
                    uuid, owner = rng.choice(running)
                    if _kill_app(node, uuid):
                        killed_pods.add(uuid)
                        kills[owner] += 1
                        actions["apps killed"] += 1
        figures["actions"] = dict(actions)
        figures["chaos_seconds"] = round(time.monotonic() - started, 1)

        # -- the faults stop; everything must converge --------------------------------------
        (node.rkt_dir / ".sim-faults.json").unlink(missing_ok=True)
        if not agent.alive:
            agent.start()
        uids: dict[str, str] = {}
        why_not: list[str] = []  # what the last look found unconverged (for the failure)

        def converged() -> dict[str, Any] | None:
            objs = _tasks(plane, namespace)
            pods = _pods(node)
            live = [p for p in pods if p.get("state") in ("running", "prepared")]
            running = {p["name"]: _owner(p) for p in live if p.get("state") == "running"}
            per_task = Counter(_owner(p) for p in live)
            why_not.clear()
            for name in names:
                obj = objs.get(name)
                status = (obj or {}).get("status") or {}
                uid = obj["metadata"]["uid"] if obj else ""
                conditions = [
                    (c.get("type"), c.get("status"), c.get("reason"))
                    for c in status.get("conditions") or []
                ]
                on_its_pod = running.get(status.get("uuid")) == uid and per_task[uid] == 1
                if (
                    status.get("phase") != "Running"
                    or not on_its_pod
                    or status.get("restarts") != kills[uid]
                    or status.get("restartEventsPosted") != status.get("restarts")
                ):
                    why_not.append(
                        f"{name}: phase={status.get('phase')} uuid={status.get('uuid')} "
                        f"restarts={status.get('restarts')} kills={kills[uid]} "
                        f"events posted={status.get('restartEventsPosted')} "
                        f"live pods={per_task[uid]} on its pod={on_its_pod} "
                        f"a killed pod={status.get('uuid') in killed_pods} {conditions}"
                    )
                else:
                    uids[name] = uid
            return None if why_not else {"objs": objs, "pods": pods}

        settle_started = time.monotonic()
        try:
            final = wait_for(converged, timeout=max(settle, 120 + 3 * n_tasks), interval=2,
                             what="every task Running on one pod of its own")  # fmt: skip
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}; not converged: {why_not}") from None
        finally:
            figures["settle_seconds"] = round(time.monotonic() - settle_started, 1)
        objs = final["objs"]
        live = [p for p in final["pods"] if p.get("state") in ("running", "prepared")]
        per_task = Counter(_owner(p) for p in live)
        figures["duplicate_pods"] = sum(c - 1 for c in per_task.values() if c > 1)
        figures["lost_tasks"] = sum(1 for n in names if objs[n]["status"]["phase"] != "Running")
        figures["restarts"] = sum(o["status"]["restarts"] for o in objs.values())
        figures["apps_killed"] = sum(kills.values())
        # Each restart's event, once: restart numbers 1..restarts of each task, no more.
        numbers = {
            n: sorted(
                int(m.group(1))
                for e in events(kubectl, namespace, n)
                if e["reason"] == "Restarting"
                and (m := RESTART_NUMBER.search(e.get("message") or "")) is not None
            )
            for n in names
        }
        figures["restarting_events"] = sum(len(v) for v in numbers.values())
        figures["restarting_events_late"] = sum(
            1
            for n in names
            for e in events(kubectl, namespace, n)
            if e["reason"] == "Restarting" and "announced late" in (e.get("message") or "")
        )  # fmt: skip
        if seen is not None:
            seen.update(p["name"] for p in final["pods"])
        assert figures["duplicate_pods"] == 0
        assert figures["lost_tasks"] == 0
        assert figures["restarts"] == figures["apps_killed"]
        assert figures["restarting_events"] == figures["restarts"], numbers
        wrong = {
            n: v
            for n, v in numbers.items()
            if v != list(range(1, objs[n]["status"]["restarts"] + 1))
        }
        assert wrong == {}, f"Restarting events by restart number (task: numbers): {wrong}"

        # -- no Secret value anywhere but in the apps -------------------------------------
        everything = json.dumps(objs) + json.dumps([events(kubectl, namespace, n) for n in names])
        assert secret not in everything
        assert secret not in node.agent_log.read_text(errors="replace")

        # -- delete everything: nothing may be left ----------------------------------------
        deleting = time.monotonic()
        kubectl("delete", "rkttasks", "--all", f"--namespace={namespace}", "--timeout=300s")
        figures["delete_seconds"] = round(time.monotonic() - deleting, 1)
        left = [p["name"] for p in _pods(node)]
        dirs = sorted(p.name for p in (node.task_root / namespace).glob("*")) if (
            node.task_root / namespace
        ).exists() else []  # fmt: skip
        figures["pods_left"] = len(left)
        figures["task_dirs_left"] = len(dirs)
        assert left == []
        assert dirs == []
    finally:
        figures["total_seconds"] = round(time.monotonic() - started, 1)
        report_path.write_text(json.dumps(figures) + "\n")
        sys.stdout.write(f"\nchaos figures: {json.dumps(figures)}\n")
        (node.rkt_dir / ".sim-faults.json").unlink(missing_ok=True)
        agent.stop()
        if seen is not None:
            seen.update(_names_in_store(node), UUID.findall(agent.log()))
        node.remove_pods()


def _names_in_store(node: SimNode) -> list[str]:
    """Every pod UUID the node's store has a directory for (whatever rkt list says)."""
    pods = node.rkt_dir / "pods"
    return [d.name for d in pods.glob("*/*")] if pods.exists() else []
