"""A real local Kubernetes control plane (etcd + kube-apiserver) for tests, benchmarks and demos.

Owns the life cycle of one control plane: certificates (``pki``), free loopback ports, the two
processes (each in its own process group, logs in the run directory), readiness, an admin
kubeconfig, and a clean stop that leaves no process and no temporary directory behind (also
registered with ``atexit``). The binaries come from an explicit assets folder holding ``etcd``,
``kube-apiserver`` and ``kubectl`` (the envtest ``KUBEBUILDER_ASSETS`` layout; ``make testenv``
builds it). There are no controllers: namespaces never finish deleting, nothing schedules pods.

The command line (``python -m rkt_devkit.cluster up|down``) is ``rkt_devkit.cluster``, which
imports this module (never the other way round).

Size: one lifecycle (certificates, etcd, kube-apiserver, readiness, clean stop) that
reads best in one place; the command line is ``rkt_devkit.cluster``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from kubernetes import config as kube_config
from kubernetes.client import ApiClient

from rkt_devkit import processes
from rkt_devkit.pki import Pki, admin_credentials, make_pki, write_kubeconfig
from rkt_devkit.processes import ControlPlaneError, ManagedProcess, PortTaken, log_tail

__all__ = ["ControlPlane", "ControlPlaneError", "KubectlError", "log_tail"]

log = logging.getLogger(__name__)

REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kubectl")


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; unlike CalledProcessError, ``str()`` includes its stderr."""

    def __str__(self) -> str:
        argv = self.cmd if isinstance(self.cmd, list) else [str(self.cmd)]
        harness = ("--kubeconfig=", "--cache-dir=")  # added by ControlPlane.kubectl, not the caller
        shown = " ".join(str(a) for a in argv[1:] if not str(a).startswith(harness))
        return f"kubectl {shown} exited {self.returncode}: {(self.stderr or '').strip()}"


# Never send requests for 127.0.0.1 through an HTTP proxy from the environment.
_PLAIN_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ControlPlane:
    """One etcd + kube-apiserver pair. Use as a context manager, or ``start()``/``stop()``.

    ``assets`` is the folder with the binaries (passed explicitly: the package never reads the
    environment). The run directory is created under ``base_dir`` (default: the system temp
    dir) and removed by ``stop()``; it holds the certificates, etcd's data, the logs
    (``etcd.log``, ``kube-apiserver.log``) and the admin ``kubeconfig``.
    """

    def __init__(
        self,
        assets: Path,
        *,
        base_dir: Path | None = None,
        start_timeout: float = 90.0,
        stop_timeout: float = 20.0,
        attempts: int = 5,
        openssl: str = "openssl",
        service_accounts: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.assets = Path(assets)
        # ServiceAccount admission (projected tokens in pods) is only useful with a kubelet;
        # without one it would reject pods of namespaces that have no ServiceAccount yet.
        self.service_accounts = service_accounts
        self.extra_args = list(extra_args)
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.attempts = attempts
        self.openssl = openssl
        self.run_dir: Path | None = None
        self.server = ""
        self.kubeconfig = Path()
        self.started_pids: list[int] = []  # every process ever started, for leak checks
        self.startup_seconds: float | None = None
        self._processes: list[ManagedProcess] = []
        self._pki: Pki | None = None
        self._opener: urllib.request.OpenerDirector | None = None
        self._state = "new"
        self._apiserver_args: list[str] = []

    # ----- binaries ---------------------------------------------------------------------------

    def binary(self, name: str) -> Path:
        """The path of binary ``name`` in the assets folder; an error naming it if unusable."""
        path = self.assets / name
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ControlPlaneError(
                f"{name}: no executable at {path} (the assets folder must hold "
                f"{', '.join(REQUIRED_BINARIES)}; `make testenv` builds them)"
            )
        return path

    @property
    def helm(self) -> Path:
        """The helm binary shipped in the same assets folder."""
        return self.binary("helm")

    # ----- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start() if self._state == "new" else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start etcd and kube-apiserver, wait until ready and write the admin kubeconfig."""
        if self._state != "new":
            raise ControlPlaneError(f"a ControlPlane starts once (it is {self._state})")
        self._state = "starting"
        for name in REQUIRED_BINARIES:
            self.binary(name)
        began = time.monotonic()
        self.run_dir = Path(tempfile.mkdtemp(prefix="rkt-operator-cp-", dir=self.base_dir))
        atexit.register(self.stop)
        try:
            self._pki = make_pki(self.run_dir / "pki", openssl=self.openssl)
            for attempt in range(1, self.attempts + 1):
                try:
                    self._start_once(attempt)
                    break
                except PortTaken as exc:
                    self._stop_processes()
                    if attempt == self.attempts:
                        raise ControlPlaneError(
                            f"{exc} (gave up after {attempt} attempts)"
                        ) from exc
                    log.warning("port race, starting again with new ports: %s", exc)
            self.kubeconfig = write_kubeconfig(
                self.run_dir / "kubeconfig",
                server=self.server,
                ca_cert=self._pki.ca_cert,
                user="admin",
                credentials=admin_credentials(self._pki),
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self._state = "running"
        log.info("control plane ready at %s in %.1fs", self.server, self.startup_seconds)
        return self

    @property
    def pki(self) -> Pki:
        """The certificates and keys of the running control plane."""
        return self._started()[1]

    def _started(self) -> tuple[Path, Pki]:
        if self.run_dir is None or self._pki is None:
            raise ControlPlaneError("the control plane has not been started")
        return self.run_dir, self._pki

    def _start_once(self, attempt: int) -> None:
        run_dir, pki = self._started()
        client_port, peer_port, api_port = processes.free_ports(3)
        data_dir = run_dir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            attempt,
        )
        etcd.wait_ready(lambda: self._etcd_healthy(etcd_url), self.start_timeout)
        self.server = f"https://127.0.0.1:{api_port}"
        self._apiserver_args = [
            f"--etcd-servers={etcd_url}",
            f"--secure-port={api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={pki.ca_cert.parent}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.client_ca_cert}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            *([] if self.service_accounts else ["--disable-admission-plugins=ServiceAccount"]),
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--endpoint-reconciler-type=none",
            # Where kube-apiserver reaches kubelets (logs, exec) as the admin user.
            f"--kubelet-client-certificate={pki.admin_cert}",
            f"--kubelet-client-key={pki.admin_key}",
            *self.extra_args,
        ]
        self._start_apiserver(f"attempt {attempt}", wait=True)

    def _start_apiserver(self, header: str, *, wait: bool) -> ManagedProcess:
        run_dir, _ = self._started()
        apiserver = ManagedProcess.spawn(
            "kube-apiserver", self.binary("kube-apiserver"), self._apiserver_args,
            log_path=run_dir / "kube-apiserver.log", header=header,
        )  # fmt: skip
        self._processes.append(apiserver)
        self.started_pids.append(apiserver.popen.pid)
        if wait:
            self.wait_apiserver_ready(apiserver)
        return apiserver

    def wait_apiserver_ready(self, apiserver: ManagedProcess | None = None) -> None:
        """Wait until kube-apiserver answers ``/readyz`` and serves the default namespace."""
        apiserver = apiserver or self._apiserver()
        apiserver.wait_ready(lambda: self._status("/readyz") == 200, self.start_timeout)
        # RBAC bootstrap and the system namespaces come with readiness; check the one we use.
        default_namespace = "/api/v1/namespaces/default"
        apiserver.wait_ready(lambda: self._status(default_namespace) == 200, self.start_timeout)

    def _apiserver(self) -> ManagedProcess:
        for process in self._processes:
            if process.name == "kube-apiserver":
                return process
        raise ControlPlaneError("kube-apiserver is not running")

    # ----- outages (for reliability tests) ----------------------------------------------------

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL when ``kill``); etcd and the data stay.
        ``start_apiserver`` brings it back on the same address with the same certificates."""
        apiserver = self._apiserver()
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(apiserver.popen.pid, signal.SIGKILL)
            apiserver.popen.wait(self.stop_timeout)
        else:
            apiserver.stop(self.stop_timeout)
        self._processes.remove(apiserver)

    def start_apiserver(self, *, wait: bool = True) -> None:
        """Start kube-apiserver again after ``stop_apiserver`` (``wait``: until it is ready).
        Without ``wait`` it returns at once: clients meet the server while it starts up."""
        if any(p.name == "kube-apiserver" for p in self._processes):
            raise ControlPlaneError("kube-apiserver is already running")
        self._start_apiserver("restart", wait=wait)

    def restart_apiserver(self, *, kill: bool = False, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver, wait ``down_seconds``, start it again and wait until ready."""
        self.stop_apiserver(kill=kill)
        time.sleep(down_seconds)
        self.start_apiserver()

    def _spawn(self, name: str, args: list[str], attempt: int) -> ManagedProcess:
        run_dir, _ = self._started()
        process = ManagedProcess.spawn(
            name, self.binary(name), args, log_path=run_dir / f"{name}.log",
            header=f"attempt {attempt}",
        )  # fmt: skip
        self._processes.append(process)
        self.started_pids.append(process.popen.pid)
        return process

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, SIGKILL after the stop timeout), then
        remove the run directory. Safe to call more than once and after a failed start."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        atexit.unregister(self.stop)
        try:
            self._stop_processes()
        finally:
            if self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _stop_processes(self) -> None:
        while self._processes:  # last started first: kube-apiserver before etcd
            self._processes.pop().stop(self.stop_timeout)

    def dead_processes(self) -> list[str]:
        """Names of the control-plane processes that have exited on their own."""
        return [p.name for p in self._processes if p.exited]

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running components, by binary name."""
        return {p.name: p.popen.pid for p in self._processes}

    def log_path(self, name: str = "kube-apiserver") -> Path:
        """The log file of component ``name`` (``etcd`` or ``kube-apiserver``)."""
        run_dir, _ = self._started()
        return run_dir / f"{name}.log"

    # ----- HTTP to the components -------------------------------------------------------------

    def _etcd_healthy(self, url: str) -> bool:
        try:
            with _PLAIN_HTTP.open(f"{url}/health", timeout=5) as response:
                return bool(json.load(response).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _https(self) -> urllib.request.OpenerDirector:
        """An opener that trusts the test CA and presents the admin client certificate."""
        if self._opener is None:
            _, pki = self._started()
            context = ssl.create_default_context(cafile=str(pki.ca_cert))
            context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
            handler = urllib.request.HTTPSHandler(context=context)
            self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), handler)
        return self._opener

    def _status(self, path: str) -> int:
        """HTTP status of an admin GET (0 while the server does not answer)."""
        try:
            with self._https().open(f"{self.server}{path}", timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def get(self, path: str) -> str:
        """GET ``path`` from kube-apiserver as the admin user; the body as text."""
        with self._https().open(f"{self.server}{path}", timeout=30) as response:
            return str(response.read().decode("utf-8"))

    def metrics(self) -> str:
        """kube-apiserver's Prometheus ``/metrics`` text."""
        return self.get("/metrics")

    # ----- kubectl and clients ----------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl with the admin kubeconfig (or ``kubeconfig``); raise KubectlError on a
        non-zero exit when ``check``."""
        argv = [str(self.binary("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}"]
        if self.run_dir is not None:
            argv.append(f"--cache-dir={self.run_dir / 'kubectl-cache'}")
        argv.extend(args)
        done = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise KubectlError(done.returncode, argv, done.stdout, done.stderr)
        return done

    def apply(self, manifest: str, *, namespace: str | None = None) -> list[str]:
        """``kubectl apply`` YAML/JSON text (server-side); the applied objects' names."""
        ns = [f"--namespace={namespace}"] if namespace else []
        done = self.kubectl(
            "apply", "--server-side", "--force-conflicts", *ns, "-o", "name", "-f", "-",
            input=manifest,
        )  # fmt: skip
        return done.stdout.split()

    def apply_crds(self, folder: Path, *, timeout: float = 60.0) -> list[str]:
        """Apply every ``*.yaml``/``*.yml``/``*.json`` in ``folder`` and wait until each CRD
        among them is Established. Returns the CRD object names (none for a missing folder)."""
        if not folder.is_dir():
            return []
        names: list[str] = []
        for path in sorted(folder.iterdir()):
            if path.suffix not in (".yaml", ".yml", ".json"):
                continue
            try:
                applied = self.apply(path.read_text())
            except KubectlError as exc:
                raise ControlPlaneError(f"cannot install {path}: {exc}") from exc
            names += [n for n in applied if n.startswith("customresourcedefinition")]
        if names:
            self.kubectl("wait", "--for=condition=Established", f"--timeout={timeout:.0f}s", *names)
        return names

    def create_token(self, namespace: str, service_account: str, duration: int = 3600) -> str:
        """A ServiceAccount token from the TokenRequest API (``duration`` seconds, >= 600)."""
        done = self.kubectl(
            "create", "token", service_account, f"--namespace={namespace}",
            f"--duration={duration}s",
        )  # fmt: skip
        return done.stdout.strip()

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """Write a kubeconfig at ``path`` that authenticates with a bearer ``token``."""
        _, pki = self._started()
        return write_kubeconfig(
            path, server=self.server, ca_cert=pki.ca_cert, user="token",
            credentials={"token": token},
        )  # fmt: skip

    def api_client(self) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` for the admin user (close it when done)."""
        api: ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api
