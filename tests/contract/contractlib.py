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
        """Spawn and wait until the app has started (``--wait-ready``)."""
        self.spawn(uuid, *flags)
        self.ok("status", f"--wait-ready={int(WAIT_SECONDS)}s", uuid)
        return self.wait_state(uuid, "running")

    def cleanup(self) -> None:
        for process in self.pods:
            if process.poll() is None:
                with contextlib.suppress(subprocess.SubprocessError):
                    subprocess.run(
                        self.argv("stop", "--force", *self._uuid_of(process)),
                        capture_output=True,
                        timeout=30,
                        check=False,
                    )
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=30)

    @staticmethod
    def _uuid_of(process: subprocess.Popen[bytes]) -> list[str]:
        args = process.args
        return [str(args[-1])] if isinstance(args, list) else []


@dataclass(frozen=True)
class GpgKey:
    """A throw-away signing key in its own GNUPGHOME (real OpenPGP, made by gpg)."""

    home: Path
    email: str
    fingerprint: str  # 40 upper-case hex digits, as gpg prints it
    public: Path  # the armored public key

    @classmethod
    def create(cls, home: Path, email: str) -> GpgKey:
        home.mkdir(mode=0o700, parents=True)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
        subprocess.run(
            [
                *gpg,
                "--passphrase",
                "",
                "--quick-gen-key",
                f"Test <{email}>",
                "ed25519",
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


@dataclass(frozen=True)
class Images:
    sleeper: Path  # example.com/sleeper: /bin/sleep 3600, port http:8080, mountPoint data
    shell: Path  # example.com/shell: /bin/sh -c 'exit 0' (tests pass --exec)
    bare: Path  # example.com/bare: no app section


@dataclass(frozen=True)
class Keys:
    trusted: GpgKey
    stranger: GpgKey
