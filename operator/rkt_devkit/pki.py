"""Throw-away certificates and kubeconfig files for the local test control plane.

Owns two things and nothing else: making the key material kube-apiserver needs (a serving CA
and certificate for ``localhost``/``127.0.0.1``, a client CA with an ``admin`` certificate in
group ``system:masters``, and a service-account signing key pair) with the ``openssl`` command
line tool, and writing kubeconfig files (certificates embedded) that point at the server.
Keys are ECDSA P-256 and certificates live a week: they never outlive a test run.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

# One openssl config for every certificate, so the result does not depend on the system's
# openssl.cnf. -subj always overrides the [dn] section.
_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc"]
_DAYS = "7"


class PkiError(RuntimeError):
    """openssl failed; the message holds the command and its stderr."""


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files kube-apiserver and its clients use."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    client_ca_cert: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _openssl(openssl: str, *args: str, cwd: Path) -> None:
    try:
        done = subprocess.run(
            [openssl, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError as exc:
        raise PkiError(
            f"openssl not found ({openssl!r}): it is needed to make test certificates"
        ) from exc
    if done.returncode != 0:
        raise PkiError(
            f"openssl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
        )


def _self_signed_ca(openssl: str, d: Path, name: str, cn: str) -> None:
    _openssl(
        openssl, "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca_ext", *_EC_KEY,
        "-days", _DAYS, "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=d,
    )  # fmt: skip


def _signed_leaf(openssl: str, d: Path, name: str, subject: str, ca: str, extensions: str) -> None:
    _openssl(
        openssl, "req", "-new", "-config", "openssl.cnf", *_EC_KEY, "-subj", subject,
        "-keyout", f"{name}.key", "-out", f"{name}.csr",
        cwd=d,
    )  # fmt: skip
    _openssl(
        openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-set_serial", str(secrets.randbits(63)), "-days", _DAYS,
        "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt",
        cwd=d,
    )  # fmt: skip
    (d / f"{name}.csr").unlink()


def make_pki(directory: Path, *, openssl: str = "openssl") -> Pki:
    """Create every certificate and key in ``directory`` (created if needed) and return them."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    (d / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    _self_signed_ca(openssl, d, "ca", "rkt-operator-test-serving-ca")
    _signed_leaf(openssl, d, "apiserver", "/CN=localhost", "ca", "server_ext")
    _self_signed_ca(openssl, d, "client-ca", "rkt-operator-test-client-ca")
    _signed_leaf(openssl, d, "admin", "/O=system:masters/CN=admin", "client-ca", "client_ext")
    _openssl(
        openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", "sa.key",
        cwd=d,
    )  # fmt: skip
    _openssl(openssl, "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    return Pki(
        ca_cert=d / "ca.crt",
        serving_cert=d / "apiserver.crt",
        serving_key=d / "apiserver.key",
        client_ca_cert=d / "client-ca.crt",
        admin_cert=d / "admin.crt",
        admin_key=d / "admin.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
    )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, user: str, credentials: dict[str, str]
) -> Path:
    """Write a one-cluster, one-user kubeconfig (JSON, which every kubeconfig reader accepts).

    ``credentials`` is the ``user`` stanza: embedded client certificate data or a ``token``.
    The file is written atomically with mode 0600 (it holds secrets).
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "rkt-operator-test",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "rkt-operator-test", "user": user}}],
        "current-context": user,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(config, indent=2) + "\n")
    tmp.replace(path)
    return path


def admin_credentials(pki: Pki) -> dict[str, str]:
    """The kubeconfig ``user`` stanza of the ``system:masters`` admin (certificates embedded)."""
    return {
        "client-certificate-data": _b64(pki.admin_cert),
        "client-key-data": _b64(pki.admin_key),
    }
