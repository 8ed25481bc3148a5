"""The contract suite's driver: an rkt executable bound to a private data directory.

Everything is run as argument lists (never a shell) with a timeout, exactly as an operator
would; ``run-prepared`` is spawned detached with its output in files.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WAIT_SECONDS = 30.0


def sim_path() -> str:
    beside = Path(sys.executable).parent / "rkt-sim"
    found = str(beside) if beside.exists() else shutil.which("rkt-sim")
    assert found, "rkt-sim is not installed: run .venv/bin/pip install -e ."
    return found


@dataclass
class Rkt:
    """One rkt executable bound to a private data directory and local configuration."""

    binary: str
    kind: str  # "sim" or "real"
    data_dir: Path
    local_config: Path
    logs: Path
    pods: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, *args: str, insecure: str | None = None) -> list[str]:
        head = [self.binary, f"--dir={self.data_dir}", f"--local-config={self.local_config}"]
        if insecure:
            head.append(f"--insecure-options={insecure}")
        return [*head, *args]

    def run(
        self,
        *args: str,
        insecure: str | None = None,
        timeout: float = 120,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, insecure=insecure),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            check=False,
        )

    def ok(self, *args: str, insecure: str | None = None) -> str:
        done = self.run(*args, insecure=insecure)
        assert done.returncode == 0, f"{args}: rc={done.returncode} stderr={done.stderr!r}"
        return done.stdout

    def prepare(self, *args: str) -> str:
        """``prepare`` an unsigned test image; return the UUID (last stdout line)."""
        out = self.ok("prepare", "--quiet", *args, insecure="image")
        uuid = out.strip().splitlines()[-1]
        assert UUID_RE.match(uuid), out
        return uuid

    def spawn(self, uuid: str, *flags: str) -> subprocess.Popen[bytes]:
        """Start ``run-prepared`` detached (own session, output to files), as an operator does."""
        out = (self.logs / f"{uuid}.out").open("wb")
        err = (self.logs / f"{uuid}.err").open("wb")
        with out, err:
            process = subprocess.Popen(
                self.argv("run-prepared", *flags, uuid),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pods.append(process)
        return process

    def status_json(self, uuid: str) -> dict[str, object]:
        value = json.loads(self.ok("status", "--format=json", uuid))
        assert isinstance(value, dict)
        return value

    def wait_state(self, uuid: str, state: str, timeout: float = WAIT_SECONDS) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status_json(uuid)
            if status["state"] == state:
                return status
            assert time.monotonic() < deadline, f"pod {uuid} never reached {state}: {status}"
            time.sleep(0.1)

    def start(self, uuid: str, *flags: str) -> dict[str, object]:
        """Spawn and wait until the apps have started, as the agent does."""
        self.spawn(uuid, *flags)
        return self.wait_started(uuid)

    def wait_started(self, uuid: str, timeout: float = WAIT_SECONDS) -> dict[str, object]:
        """Poll ``status`` until the pod runs and its apps have started (``started_at``).

        Not ``status --wait-ready``: with the host flavor on a host whose PID 1 is not
        systemd (these machines) it never succeeds, so neither rkt users nor the agent can
        rely on it; both runtimes agree on the polled fields.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.status_json(uuid)
            if status["state"] == "running" and "started_at" in status:
                return status
            assert status["state"] in {"prepared", "running"}, f"pod {uuid} ended: {status}"
            assert time.monotonic() < deadline, f"pod {uuid} never started: {status}"
            time.sleep(0.1)

    def wait_enterable(self, uuid: str, app: str | None = None) -> None:
        """Poll until ``enter`` reaches a set-up app (its /proc and hostname in place).

        With real rkt, ``started_at`` can show before the app's root is complete: an
        ``enter`` at that moment runs with an empty /etc/hostname and no /proc entries.
        """
        deadline = time.monotonic() + WAIT_SECONDS
        target = [f"--app={app}"] if app else []
        while True:
            done = self.run("enter", *target, uuid, "/bin/cat", "/etc/hostname", timeout=30)
            if done.returncode == 0 and done.stdout.strip() == f"rkt-{uuid}":
                return
            assert time.monotonic() < deadline, f"enter never worked: {done}"
            time.sleep(0.2)

    def cleanup(self) -> None:
        """Stop every pod this test made and remove it all, as an operator must: with real
        rkt only ``rm`` (or ``gc``) tears down a pod's network namespace, veth, iptables
        chains and overlay mounts."""
        listed = self.run("list", "--format=json", timeout=60)
        pods: list[dict[str, object]] = []
        with contextlib.suppress(ValueError):
            pods = json.loads(listed.stdout or "null") or []
        uuids = [str(p["name"]) for p in pods]
        running = [str(p["name"]) for p in pods if p.get("state") == "running"]
        if running:
            self.run("stop", "--force", *running, timeout=60)
        for process in self.pods:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        deadline = time.monotonic() + WAIT_SECONDS
        for uuid in running:
            while self.status_state(uuid) == "running" and time.monotonic() < deadline:
                time.sleep(0.2)
        if uuids:
            self.run("rm", *uuids, timeout=120)
        self.run("gc", "--grace-period=0s", "--expire-prepared=0s", timeout=120)

    def status_state(self, uuid: str) -> str | None:
        done = self.run("status", "--format=json", uuid, timeout=30)
        if done.returncode != 0:
            return None
        with contextlib.suppress(ValueError, AttributeError):
            return str(json.loads(done.stdout).get("state"))
        return None


@dataclass(frozen=True)
class GpgKey:
    """A throw-away signing key in its own GNUPGHOME (real OpenPGP, made by gpg)."""

    home: Path
    email: str
    fingerprint: str  # 40 upper-case hex digits, as gpg prints it
    public: Path  # the armored public key

    @classmethod
    def create(cls, home: Path, email: str, algorithm: str = "rsa2048") -> GpgKey:
        """rsa2048 by default: rkt 1.30's OpenPGP reads RSA keys, not EdDSA (type 22)."""
        home.mkdir(mode=0o700, parents=True)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
        subprocess.run(
            [
                *gpg,
                "--passphrase",
                "",
                "--quick-gen-key",
                f"Test <{email}>",
                algorithm,
                "sign",
                "never",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        listing = subprocess.run(
            [*gpg, "--with-colons", "--fingerprint", email],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        fingerprint = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
        public = home / "public.asc"
        exported = subprocess.run(
            [*gpg, "--armor", "--export", email], check=True, capture_output=True, timeout=60
        )
        public.write_bytes(exported.stdout)
        return cls(home, email, fingerprint, public)

    def sign(self, path: Path, target: Path | None = None) -> Path:
        """Write a detached armored signature (``<path>.asc`` by default)."""
        out = target or Path(f"{path}.asc")
        subprocess.run(
            [
                "gpg",
                "--homedir",
                str(self.home),
                "--batch",
                "--quiet",
                "--yes",
                "--armor",
                "--local-user",
                self.email,
                "--detach-sign",
                "-o",
                str(out),
                str(path),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return out

    def close(self) -> None:
        """Stop the gpg-agent that gpg started for this home (it would outlive the run)."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
            check=False, capture_output=True, timeout=60,
        )  # fmt: skip


@dataclass(frozen=True)
class Images:
    sleeper: Path  # example.com/sleeper: /bin/sleep 3600, port http:8080, mountPoint data
    shell: Path  # example.com/shell: /bin/sh -c 'exit 0' (tests pass --exec)
    bare: Path  # example.com/bare: no app section


@dataclass(frozen=True)
class Keys:
    trusted: GpgKey
    stranger: GpgKey
    eddsa: GpgKey  # gpg's default key type today, which rkt cannot read
