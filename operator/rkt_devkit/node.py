"""A real single-node Kubernetes on this machine: containerd + runc, kubelet,
kube-controller-manager and kube-scheduler, joined to a :class:`ControlPlane`.

Owns the node's life cycle and nothing else: its run directory (containerd's root and state,
the kubelet's root directory and pod logs, configs, logs), its processes (each in its own
process group), images loaded into containerd, and a stop that removes every pod, container,
mount and host change it made (:mod:`rkt_devkit.hoststate`). Needs root, Debian's containerd,
runc, conntrack and socat, and the binaries ``.ci/nodebin.sh`` builds.

Settings and why (measured on these machines, see the README's real-node section):
- kubelet: ``failCgroupV1: false`` (kubelet >= 1.35 refuses cgroup v1 otherwise),
  ``cgroupDriver: cgroupfs`` (systemd is not PID 1), ``failSwapOn: false``;
- containerd CRI: ``restrict_oom_score_adj = true`` (without CAP_SYS_RESOURCE runc fails every
  sandbox), a locally built pause image as ``sandbox_image`` (no registry is reachable);
- ``mount --make-shared /`` while the node runs (the chart's ``Bidirectional`` mounts);
- kube-apiserver ``--kubelet-preferred-address-types=InternalIP`` (no DNS for node names) and
  the ServiceAccount admission plugin (pods get their projected token);
- no kube-proxy, no cluster DNS: the Service IP of ``kubernetes`` does not route. Pods on the
  host network reach the API server at the node's loopback address (``api_host``/``api_port``).
- no CNI: the node stays NotReady for pod networking; host-network pods (the agent) still run
  where they tolerate the ``not-ready`` taint.

Size: one node's whole life cycle (start, readiness, images, clean stop) with the settings
above and their reasons next to the code that applies them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from rkt_devkit import processes
from rkt_devkit.controlplane import ControlPlane, KubectlError
from rkt_devkit.hoststate import HostState, unmount_all
from rkt_devkit.pki import Pki
from rkt_devkit.processes import ControlPlaneError, ManagedProcess, log_tail

__all__ = ["Node", "NodeError", "node_ip"]

log = logging.getLogger(__name__)

NODE_BINARIES = ("kubelet", "kube-controller-manager", "kube-scheduler")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "conntrack", "socat")
CTR_NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace


class NodeError(ControlPlaneError):
    """The node could not start or stop cleanly (the message says which part and why)."""


def node_ip() -> str:
    """The address this machine uses for its default route (the node's InternalIP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("198.51.100.1", 9))  # TEST-NET-2; no packet is sent: connect picks a route
        return str(s.getsockname()[0])


def control_plane_args() -> list[str]:
    """kube-apiserver flags a control plane needs to serve a real kubelet."""
    return ["--kubelet-preferred-address-types=InternalIP"]


def _containerd_config(run: Path, pause_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{run}/containerd/root"
state = "{run}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{run}/containerd.sock"
[ttrpc]
  address = "{run}/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{run}/containerd/opt"
[{cri}]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{run}/runc"
  [{cri}.cni]
    bin_dir = "{run}/cni/bin"
    conf_dir = "{run}/cni/net.d"
"""


def _kubelet_config(run: Path, pki: Pki, address: str, port: int, healthz_port: int) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "containerRuntimeEndpoint": f"unix://{run}/containerd.sock",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(run / "pod-logs"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            # kube-apiserver presents the admin client certificate (logs, exec).
            "x509": {"clientCAFile": str(pki.client_ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        # No cluster DNS: pods get no resolv.conf from the node.
        "resolvConf": "",
        # A shared test machine: never evict or garbage-collect images for lack of space.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "registerNode": True,
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
    }
    return json.dumps(config, indent=2) + "\n"


class Node:
    """One node named ``name`` joined to ``plane``. Use as a context manager or start()/stop().

    ``assets`` holds kubelet, kube-controller-manager and kube-scheduler (``.ci/nodebin.sh``);
    ``pause_archive`` is a docker-archive of the sandbox image ``pause_image``
    (``.ci/node-prereqs.sh``). The control plane must have been started with
    :func:`control_plane_args` and ``service_accounts=True``.
    """

    def __init__(
        self,
        plane: ControlPlane,
        assets: Path,
        *,
        pause_image: str,
        pause_archive: Path,
        name: str = "rkt-node",
        base_dir: Path = Path("/var/tmp"),
        start_timeout: float = 120.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.plane = plane
        self.assets = Path(assets)
        self.pause_image = pause_image
        self.pause_archive = Path(pause_archive)
        self.name = name
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.run_dir: Path | None = None
        self.ip = ""
        self.startup_seconds: float | None = None
        self.host: HostState | None = None
        self.undone: list[str] = []  # host changes restore() undid, for the log and for tests
        self._processes: dict[str, ManagedProcess] = {}
        self._state = "new"

    # ----- paths and tools --------------------------------------------------------------------

    def _run(self) -> Path:
        if self.run_dir is None:
            raise NodeError("the node has not been started")
        return self.run_dir

    @property
    def containerd_socket(self) -> Path:
        return self._run() / "containerd.sock"

    def binary(self, name: str) -> Path:
        path = self.assets / name
        if not path.is_file() or not os.access(path, os.X_OK):
            raise NodeError(f"{name}: no executable at {path} (.ci/nodebin.sh builds it)")
        return path

    def ctr(self, *args: str, check: bool = True, timeout: float = 300.0) -> str:
        """``ctr`` against this node's containerd, in the CRI namespace; its stdout."""
        argv = ["ctr", f"--address={self.containerd_socket}", f"--namespace={CTR_NAMESPACE}"]
        done = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def import_image(self, archive: Path) -> None:
        """Load a docker-archive into the node's containerd (the images pods may use)."""
        self.ctr("images", "import", "--no-unpack", str(archive))

    def tag_image(self, source: str, target: str) -> None:
        """Give a loaded image a second reference (``ctr images tag``)."""
        self.ctr("images", "tag", "--force", source, target)

    def images(self) -> list[str]:
        return self.ctr("images", "list", "--quiet").split()

    def log_path(self, component: str) -> Path:
        return self._run() / f"{component}.log"

    # ----- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Node:
        return self.start() if self._state == "new" else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Node:
        """Start containerd, the kubelet, the controller manager and the scheduler; return once
        the Node object is registered and the kube-root-ca.crt ConfigMap is published."""
        if self._state != "new":
            raise NodeError(f"a Node starts once (it is {self._state})")
        self._state = "starting"
        if os.geteuid() != 0:
            raise NodeError("a real node needs root (kubelet, containerd, mounts, cgroups)")
        missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
        if missing:
            raise NodeError(f"missing host tools: {', '.join(missing)} (.ci/node-prereqs.sh)")
        for binary in NODE_BINARIES:
            self.binary(binary)
        if not self.pause_archive.is_file():
            raise NodeError(f"no pause image archive at {self.pause_archive}")
        began = time.monotonic()
        self.run_dir = Path(tempfile.mkdtemp(prefix="rkt-operator-node-", dir=self.base_dir))
        self.run_dir.chmod(0o755)
        atexit.register(self.stop)
        try:
            self.host = HostState.record()
            self.ip = node_ip()
            self._start_containerd()
            self.import_image(self.pause_archive)
            self.host.make_root_shared()
            self._start_kubelet()
            self._start_controllers()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self._state = "running"
        log.info("node %s (%s) ready in %.1fs", self.name, self.ip, self.startup_seconds)
        return self

    def _spawn(self, name: str, binary: Path | str, args: list[str]) -> ManagedProcess:
        run = self._run()
        process = ManagedProcess.spawn(
            name, Path(binary), args, log_path=run / f"{name}.log", header="node"
        )
        self._processes[name] = process
        return process

    def _start_containerd(self) -> None:
        run = self._run()
        for sub in ("cni/bin", "cni/net.d", "runc"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        config = run / "containerd.toml"
        config.write_text(_containerd_config(run, self.pause_image))
        binary = shutil.which("containerd") or "containerd"
        process = self._spawn("containerd", binary, [f"--config={config}", "--log-level=info"])

        def ready() -> bool:
            if not self.containerd_socket.exists():
                return False
            done = subprocess.run(
                ["ctr", f"--address={self.containerd_socket}", "version"],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            return done.returncode == 0

        process.wait_ready(ready, self.start_timeout)

    def _start_kubelet(self) -> None:
        run = self._run()
        pki = self.plane.pki
        port, healthz = processes.free_ports(2)
        config = run / "kubelet.json"
        config.write_text(_kubelet_config(run, pki, self.ip, port, healthz))
        process = self._spawn(
            "kubelet",
            self.binary("kubelet"),
            [
                f"--config={config}",
                f"--kubeconfig={self.plane.kubeconfig}",
                f"--root-dir={run / 'kubelet'}",
                f"--cert-dir={run / 'kubelet' / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.ip}",
                "--v=1",
            ],
        )

        def registered() -> bool:
            done = self.plane.kubectl("get", "node", self.name, "-o", "name", check=False)
            return done.returncode == 0

        process.wait_ready(registered, self.start_timeout)

    def _start_controllers(self) -> None:
        pki = self.plane.pki
        kubeconfig = str(self.plane.kubeconfig)
        cm_port, sched_port = processes.free_ports(2)
        manager = self._spawn(
            "kube-controller-manager",
            self.binary("kube-controller-manager"),
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={cm_port}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                "--use-service-account-credentials=false",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
            ],
        )
        self._spawn(
            "kube-scheduler",
            self.binary("kube-scheduler"),
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
            ],
        )

        def published() -> bool:  # the root CA publisher runs: projected tokens can mount
            done = self.plane.kubectl(
                "get", "configmap", "kube-root-ca.crt", "--namespace=default", check=False
            )
            return done.returncode == 0

        manager.wait_ready(published, self.start_timeout)

    def dead_processes(self) -> list[str]:
        """Names of node processes that have exited on their own."""
        return [name for name, p in self._processes.items() if p.exited]

    def logs(self, lines: int = 30) -> str:
        """The last lines of every component's log (for failure reports)."""
        parts = []
        for name, process in self._processes.items():
            parts.append(f"--- {name} ---\n{log_tail(process.log, lines)}")
        return "\n".join(parts)

    # ----- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Remove every pod, stop the components, kill leftover containers, unmount, restore
        the host and remove the run directory. Safe to call more than once."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        atexit.unregister(self.stop)
        try:
            self._drain()
        finally:
            for name in ("kube-scheduler", "kube-controller-manager", "kubelet"):
                process = self._processes.pop(name, None)
                if process is not None:
                    process.stop(self.stop_timeout)
            if "containerd" in self._processes:
                self._kill_containers()
                self._processes.pop("containerd").stop(self.stop_timeout)
            self._kill_shims()
            if self.run_dir is not None:
                unmount_all([self.run_dir])
            if self.host is not None:
                self.undone = self.host.restore()
                for change in self.undone:
                    log.info("host restored: %s", change)
            if self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _drain(self) -> None:
        """Delete every pod of the node through the API and wait until containerd runs none."""
        if "kubelet" not in self._processes or self._processes["kubelet"].exited:
            return
        manager = self._processes.pop("kube-controller-manager", None)
        if manager is not None:  # no DaemonSet controller re-creating what is deleted
            manager.stop(self.stop_timeout)
        try:
            self.plane.kubectl(
                "delete", "pods", "--all-namespaces", "--wait=false",
                f"--field-selector=spec.nodeName={self.name}", timeout=60,
            )  # fmt: skip
        except (KubectlError, subprocess.TimeoutExpired) as exc:
            log.warning("deleting the node's pods: %s", exc)
            return
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not self._running_tasks():
                return
            time.sleep(1)
        log.warning("pods still running after 90s; killing their containers")

    def _running_tasks(self) -> list[str]:
        try:
            out = self.ctr("tasks", "list", check=False, timeout=30)
        except subprocess.TimeoutExpired:
            return []
        return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]

    def _kill_containers(self) -> None:
        for task in self._running_tasks():
            self.ctr("tasks", "kill", "--signal=SIGKILL", task, check=False, timeout=30)
        time.sleep(1)
        for task in self._running_tasks():
            self.ctr("tasks", "delete", "--force", task, check=False, timeout=30)
        for container in self.ctr("containers", "list", "--quiet", check=False).split():
            self.ctr("containers", "delete", container, check=False, timeout=30)

    def _kill_shims(self) -> None:
        """SIGKILL containerd shims started for this node's containerd (by its socket)."""
        if self.run_dir is None:
            return
        marker = str(self.containerd_socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline.split(b"\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), 9)
