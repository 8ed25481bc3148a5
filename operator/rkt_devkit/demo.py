"""The local demo behind ``make demo``: a control plane, two simulated nodes with their agents,
the examples applied, and the resulting table of tasks.

Owns the demo's sequence and its state file. ``run`` starts a control plane (the detached
``cluster`` server, so that ``--keep`` can leave it behind), registers Node objects
``node-a`` and ``node-b`` (Ready, with allocatable memory and cpu; node-b labelled
``disk=ssd``), builds the example images and fetches them into each node's rkt-sim store,
starts one agent per node and the binder (``rkt-operator schedule``, which places the
examples that name no node), applies ``examples/``, waits until every task is
Running (services) or Succeeded (run-once tasks), prints ``kubectl get rkttasks -o wide``
and tears everything down, or with ``--keep`` leaves it all running and says how to stop
it. ``--stop DIR`` is that teardown: tasks deleted (their agents stop the pods), agents
and binder stopped, leftover pods removed, control plane stopped, directory removed.

    python -m rkt_devkit.demo --assets DIR [--keep] [--dir DIR] [--rkt RKT_BINARY]
    python -m rkt_devkit.demo --stop DIR

With ``--rkt`` (``make demo RKT=real``) the nodes run real rkt (its host stage1, as root)
instead of rkt-sim: the table shows the pods' real IPs (172.16.28.x) and the kv example is
asked over HTTP on its host port. Both nodes share the host's network; each has its own
rkt ``--dir`` and task root. A kv host port already taken on this host is replaced by a
free one in the applied copy of the examples.

Size: the demo is one script read top to bottom (cluster, nodes, examples, table);
the images and the simulated nodes are in ``demo_images`` and ``demo_nodes``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from rkt_devkit import cluster, demo_images
from rkt_devkit.demo_nodes import NodeError, SimNode, stop_agent

REPO = Path(__file__).resolve().parents[2]
NSPAWN_DIR = REPO / "helm" / "node"  # the systemd-nspawn shim for real rkt's host stage1
NODES = ("node-a", "node-b")
# What the binder sees of each node (no kubelet reports it here): labels and allocatable.
NODE_LABELS = {"node-a": {"disk": "hdd"}, "node-b": {"disk": "ssd"}}
ALLOCATABLE = {"memory": "2Gi", "cpu": "2", "pods": "110"}
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
STATE = "demo.json"


def say(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


class Demo:
    """One demo instance rooted at ``directory`` (which its state file describes)."""

    def __init__(
        self,
        directory: Path,
        bin_dir: Path,
        kubectl: Path | None = None,
        *,
        rkt: Path | None = None,
    ) -> None:
        self.dir = directory
        self.bin_dir = bin_dir
        self.kubectl_bin = kubectl
        self.rkt = rkt
        self.nodes = [
            SimNode(name, directory / name, bin_dir, real_rkt=rkt, nspawn_dir=NSPAWN_DIR)
            for name in NODES
        ]
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.binder: subprocess.Popen[bytes] | None = None

    @property
    def cluster_dir(self) -> Path:
        return self.dir / "cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig"

    # ----- state file -------------------------------------------------------------------------

    def save(self, **extra: Any) -> None:
        state = {
            "kubectl": str(self.kubectl_bin),
            "bin_dir": str(self.bin_dir),
            "rkt": str(self.rkt) if self.rkt else None,
            "agents": {name: popen.pid for name, popen in self.agents.items()},
            "binder": self.binder.pid if self.binder is not None else None,
            **extra,
        }
        (self.dir / STATE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> tuple[Demo, dict[str, Any]]:
        state = json.loads((directory / STATE).read_text())
        rkt = Path(state["rkt"]) if state.get("rkt") else None
        demo = cls(directory, Path(state["bin_dir"]), Path(state["kubectl"]), rkt=rkt)
        return demo, state

    # ----- kubectl ----------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if self.kubectl_bin is None:
            raise DemoError("no kubectl")
        argv = [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    # ----- set-up -----------------------------------------------------------------------------

    def start_cluster(self, assets: Path) -> None:
        say(f"[1/6] starting a local control plane (etcd + kube-apiserver) in {self.cluster_dir}")
        if cluster.up(assets, self.cluster_dir, timeout=120.0) != 0:
            raise DemoError("the control plane did not start (see above)")
        crd = REPO / "crds" / "rkttasks.rktoperator.io.yaml"
        self.kubectl("apply", "--server-side", "-f", str(crd))
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "customresourcedefinition/rkttasks.rktoperator.io",
        )  # fmt: skip
        say("      RktTask CRD installed")

    def register_nodes(self) -> None:
        say(f"[2/6] registering Node objects {', '.join(NODES)} (no kubelet: objects only)")
        for node in self.nodes:
            labels = {"kubernetes.io/os": "linux", **NODE_LABELS.get(node.name, {})}
            manifest = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node.name, "labels": labels},
            }
            self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
            # What a kubelet and the node lifecycle controller would report: Ready, the
            # allocatable amounts, and no not-ready taint (admission adds one on create).
            status = {
                "conditions": [{"type": "Ready", "status": "True", "reason": "DemoNode",
                                "message": "registered by the demo"}],
                "allocatable": ALLOCATABLE,
                "capacity": ALLOCATABLE,
            }  # fmt: skip
            self.kubectl(
                "patch", "node", node.name, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}),
            )  # fmt: skip
            current = json.loads(self.kubectl("get", "node", node.name, "-o", "json").stdout)
            taints = [
                t for t in current["spec"].get("taints") or [] if t.get("key") != NOT_READY_TAINT
            ]
            self.kubectl(
                "patch", "node", node.name, "--type=merge",
                "-p", json.dumps({"spec": {"taints": taints}}),
            )  # fmt: skip

    def prepare_images(self, examples: Path) -> None:
        runtime = f"real rkt ({self.rkt})" if self.rkt else "rkt-sim"
        say(f"[3/6] building the example images and fetching them into each node's {runtime} store")
        images = demo_images.build(self.dir / "images")
        for node in self.nodes:
            node.prepare()
            for aci in images:
                node.fetch(aci)
        say(f"      {', '.join(p.name for p in images)} -> {', '.join(NODES)}")
        for path in demo_images.host_volume_dirs(examples, self.dir):
            say(f"      host directory {path} prepared for the host-volume example")

    def start_agents(self) -> None:
        say("[4/6] starting one agent per node: rkt-operator run --node-name=<node> ...")
        for node in self.nodes:
            popen = node.start_agent(self.kubeconfig, _free_port())
            self.agents[node.name] = popen
            say(f"      {node.name}: pid {popen.pid}, log {node.agent_log}")
        self.save()

    def start_binder(self) -> None:
        say("      the binder: rkt-operator schedule (places the tasks that name no node)")
        self._mark_rkt_usable()
        log = self.dir / "binder.log"
        argv = [
            str(self.bin_dir / "rkt-operator"), "schedule",
            f"--kubeconfig={self.kubeconfig}", "--lease-namespace=default",
            "--identity=demo", "--resync-seconds=5",
        ]  # fmt: skip
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "HOME": str(self.dir), "LANG": "C.UTF-8"}
        with log.open("ab") as out:
            self.binder = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=self.dir, start_new_session=True,
            )  # fmt: skip
        say(f"      binder: pid {self.binder.pid}, log {log}")
        self.save()

    def _mark_rkt_usable(self, timeout: float = 60.0) -> None:
        """Wait for each agent's fingerprint label. An agent that is not root reports rkt as
        unusable (rkt needs root); the unprivileged demo then marks the node usable itself,
        as its simulator approximates rkt without root."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while True:
                value = self.kubectl(
                    "get", "node", node.name, "-o",
                    "jsonpath={.metadata.labels.rktoperator\\.io/rkt}",
                ).stdout.strip()  # fmt: skip
                if value == "true":
                    break
                if value == "false" or time.monotonic() > deadline:
                    say(f"      {node.name}: agent not root, marked rktoperator.io/rkt=true")
                    self.kubectl(
                        "label", "node", node.name, "rktoperator.io/rkt=true", "--overwrite"
                    )
                    break
                time.sleep(0.5)

    def apply_examples(self, examples: Path) -> None:
        say(f"[5/6] kubectl apply -f {examples}")
        done = self.kubectl("apply", "--namespace=default", "-f", str(examples))
        for line in done.stdout.splitlines():
            say(f"      {line}")

    # ----- waiting ----------------------------------------------------------------------------

    def wait_for_tasks(self, timeout: float) -> None:
        say("[6/6] waiting for every task: services Running and Ready, run-once tasks Succeeded")
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            for name, popen in self.agents.items():
                if popen.poll() is not None:
                    raise DemoError(f"the agent of {name} exited with code {popen.returncode}")
            tasks = json.loads(self.kubectl("get", "rkttasks", "-A", "-o", "json").stdout)
            pending = []
            for task in tasks["items"]:
                name = task["metadata"]["name"]
                verdict, text = _judge(task)
                if seen.get(name) != text:
                    seen[name] = text
                    where = task["spec"].get("nodeName") or "not bound yet"
                    say(f"      {name} ({where}): {text}")
                if verdict == "failed":
                    raise DemoError(f"task {name} failed: {text}")
                if verdict == "waiting":
                    pending.append(name)
            if tasks["items"] and not pending:
                return
            if time.monotonic() > deadline:
                raise DemoError(f"not done after {timeout:.0f}s: {', '.join(pending)}")
            time.sleep(1.0)

    def table(self) -> str:
        return self.kubectl("get", "rkttasks", "-A", "-o", "wide").stdout

    def ask_services(self) -> None:
        """GET / on every host port of every Running task, from this host: the app answers
        through rkt's port forwarding."""
        tasks = json.loads(self.kubectl("get", "rkttasks", "-A", "-o", "json").stdout)
        for task in tasks["items"]:
            status = task.get("status") or {}
            if status.get("phase") != "Running":
                continue
            for port in task["spec"].get("ports") or []:
                host_port = port.get("hostPort")
                if not host_port:
                    continue
                url = f"http://127.0.0.1:{host_port}/"
                say(f"$ GET {url}   # {task['metadata']['name']}, pod IP {status.get('ip')}")
                say(f"      {_http_get(url)}")

    def report_failure(self) -> None:
        say("\nthe demo failed; the tasks and the last lines of each agent's log:")
        if self.kubeconfig.exists():
            say(self.kubectl("get", "rkttasks", "-A", "-o", "wide", check=False).stdout)
        for node in self.nodes:
            say(f"--- {node.agent_log}")
            say(node.log_tail())

    # ----- teardown ---------------------------------------------------------------------------

    def stop_binder(self, pid: int | None) -> None:
        """SIGTERM the binder (it releases its Lease) if that pid is still our binder."""
        if pid is None:
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if b"schedule" not in cmdline or not any(b"rkt-operator" in a for a in cmdline):
            return
        os.kill(pid, signal.SIGTERM)
        if self.binder is not None and self.binder.pid == pid:
            self.binder.wait(timeout=30)
            self.binder = None
        else:
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        say(f"      binder (pid {pid}) stopped")

    def stop(self, agent_pids: dict[str, int], binder_pid: int | None = None) -> None:
        say("tearing down: deleting the tasks (their agents stop the pods)")
        if self.kubeconfig.exists():
            self.kubectl("delete", "rkttasks", "--all", "-A", "--wait=false", check=False)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                left = self.kubectl("get", "rkttasks", "-A", "-o", "name", check=False)
                if left.returncode != 0 or not left.stdout.strip():
                    break
                time.sleep(1.0)
        self.stop_binder(binder_pid)
        for node in self.nodes:
            pid = agent_pids.get(node.name)
            if pid is not None and stop_agent(pid, node):
                say(f"      agent of {node.name} (pid {pid}) stopped")
            popen = self.agents.pop(node.name, None)
            if popen is not None:
                popen.wait()
            leftovers = node.remove_pods() if node.rkt_dir.is_dir() else []
            if leftovers:
                say(f"      {node.name}: removed {len(leftovers)} pod(s) left in its store")
        cluster.down(self.cluster_dir)
        for path in demo_images.host_volume_dirs_created(self.dir):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        say("demo stopped; nothing left running")


def _judge(task: dict[str, Any]) -> tuple[str, str]:
    """``(done|waiting|failed, text)`` for one task: what the demo waits for."""
    status = task.get("status") or {}
    phase = status.get("phase", "Pending")
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    ready = conditions.get("Ready", {}).get("status") == "True"
    stalled = conditions.get("Stalled", {})
    service = task["spec"].get("restartPolicy", "Always") == "Always"
    text = phase + (" (Ready)" if ready else "")
    if stalled.get("status") == "True":
        return "failed", f"Stalled: {stalled.get('reason')}: {stalled.get('message')}"
    if phase == "Failed":
        return "failed", f"Failed (exit code {status.get('exitCode')}): {status.get('message')}"
    if (service and phase == "Running" and ready) or (not service and phase == "Succeeded"):
        return "done", text
    return "waiting", text


def _http_get(url: str) -> str:
    """The status line of one HTTP GET (any status is an answer), or why there was none."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - our own URL
            return f"HTTP {reply.status} {reply.reason}: the app answered"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}: the app answered"
    except (urllib.error.URLError, OSError) as exc:
        return f"no answer: {exc}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once
        except OSError:
            return False
    return True


def _examples_with_free_ports(examples: Path, directory: Path) -> Path:
    """``examples`` itself, or a copy in which every hostPort that is taken on this host
    is replaced by a free one (real rkt forwards host ports on the real host)."""
    changed = False
    docs_by_file: dict[str, list[Any]] = {}
    for path in sorted(examples.glob("*.yaml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "RktTask":
                continue
            for port in doc["spec"].get("ports") or []:
                if port.get("hostPort") and not _port_free(int(port["hostPort"])):
                    new = _free_port()
                    say(f"      host port {port['hostPort']} is taken here: {new} instead")
                    port["hostPort"] = new
                    changed = True
        docs_by_file[path.name] = docs
    if not changed:
        return examples
    copy = directory / "examples"
    copy.mkdir(parents=True, exist_ok=True)
    for name, docs in docs_by_file.items():
        (copy / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return copy


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    assets: Path,
    directory: Path,
    examples: Path,
    *,
    keep: bool,
    timeout: float,
    rkt: Path | None = None,
) -> int:
    bin_dir = Path(sys.executable).parent
    demo = Demo(directory, bin_dir, assets / "kubectl", rkt=rkt)
    directory.mkdir(parents=True, exist_ok=True)
    demo.save()
    ok = False
    try:
        demo.start_cluster(assets)
        demo.register_nodes()
        demo.prepare_images(examples)
        if rkt is not None:
            examples = _examples_with_free_ports(examples, directory)
        demo.start_agents()
        demo.start_binder()
        demo.apply_examples(examples)
        demo.wait_for_tasks(timeout)
        say("\n$ kubectl get rkttasks -A -o wide")
        say(demo.table())
        if rkt is not None:
            demo.ask_services()
        ok = True
    except (DemoError, NodeError, demo_images.ImageError, OSError) as exc:
        say(f"\nerror: {exc}")
        demo.report_failure()
    except KeyboardInterrupt:
        say("\ninterrupted")
        keep = False
    if keep:
        for popen in [*demo.agents.values(), *([demo.binder] if demo.binder else [])]:
            popen.returncode = 0  # they live on by design; keep Popen from warning about it
        say(f"left running (KEEP). kubeconfig: {demo.kubeconfig}")
        say(f"  export KUBECONFIG={demo.kubeconfig}")
        say(f"  export PATH={assets}:$PATH   # the demo's kubectl and helm")
        say("  kubectl get rkttasks -o wide; kubectl describe rkt kv-server")
        pids = ", ".join(f"{n} {p.pid}" for n, p in demo.agents.items())
        say(f"  agents: {pids}; logs in {directory}/<node>/agent.log")
        say(f"stop it with: {sys.executable} -m rkt_devkit.demo --stop {directory}")
        return 0 if ok else 1
    demo.stop(
        {name: popen.pid for name, popen in demo.agents.items()},
        demo.binder.pid if demo.binder is not None else None,
    )
    return 0 if ok else 1


def stop(directory: Path) -> int:
    if not (directory / STATE).is_file():
        say(f"no demo in {directory} (no {STATE})")
        return 1
    demo, state = Demo.load(directory)
    binder = state.get("binder")
    demo.stop(
        {name: int(pid) for name, pid in state.get("agents", {}).items()},
        int(binder) if binder is not None else None,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rkt_devkit.demo",
        description="local demo: control plane + two simulated nodes + examples/",
    )
    parser.add_argument("--assets", type=Path, help="folder with etcd, kube-apiserver, kubectl")
    parser.add_argument("--keep", action="store_true", help="leave everything running")
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temp dir)")
    parser.add_argument("--examples", type=Path, default=REPO / "examples")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for tasks")
    parser.add_argument("--stop", type=Path, metavar="DIR", help="stop a demo left by --keep")
    parser.add_argument(
        "--rkt", type=Path, metavar="BINARY", help="real rkt for the nodes instead of rkt-sim"
    )
    args = parser.parse_args(argv)
    if args.stop is not None:
        return stop(args.stop.resolve())
    if args.assets is None:
        parser.error("--assets is required (make demo passes it)")
    directory = (args.dir or Path(tempfile.mkdtemp(prefix="rkt-operator-demo-"))).resolve()
    rkt = args.rkt.resolve() if args.rkt else None
    if rkt is not None and os.geteuid() == 0:
        # rkt warns on every command without an "rkt" group; harmless, but noisy.
        subprocess.run(["groupadd", "-f", "rkt"], capture_output=True, check=False)
    return run(
        args.assets.resolve(), directory, args.examples.resolve(), keep=args.keep,
        timeout=args.timeout, rkt=rkt,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
