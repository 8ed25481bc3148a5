"""OpenPGP public keys and the trusted-key store (``trustedkeys/{prefix.d,root.d}``).

The simulator reads armored keys itself (packet parsing and the v4 fingerprint, so ``trust``
can print rkt's fingerprint lines without any dependency) and verifies detached image
signatures with the host's ``gpg`` against exactly the keys rkt's keystore would use for
an image name: the root keys plus the keys of every path prefix of the name, from both the
system and the local configuration directories.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


class TrustError(Exception):
    """A key or signature problem; the message is the one Go's openpgp package gives."""


@dataclass
class PublicKey:
    fingerprint: bytes
    subkeys: list[bytes] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)

    @property
    def hex(self) -> str:
        return self.fingerprint.hex()


def format_fingerprint(fpr: bytes) -> str:
    """``1A2B 3C4D 5E6F 7A8B 9C0D  1E2F ...``: groups of 4, two spaces after the 5th group."""
    groups = [fpr[i : i + 2].hex().upper() for i in range(0, len(fpr), 2)]
    return " ".join(groups[:5]) + "  " + " ".join(groups[5:])


def dearmor(text: str) -> bytes:
    lines = text.splitlines()
    try:
        start = next(
            i for i, ln in enumerate(lines) if ln.startswith("-----BEGIN PGP PUBLIC KEY BLOCK")
        )
        end = next(i for i, ln in enumerate(lines) if i > start and ln.startswith("-----END PGP"))
    except StopIteration:
        raise TrustError("openpgp: invalid argument: no armored data found") from None
    body = lines[start + 1 : end]
    if "" in body:  # armor headers end at the first blank line
        body = body[body.index("") + 1 :]
    data = "".join(ln.strip() for ln in body if ln.strip() and not ln.startswith("="))
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise TrustError("openpgp: invalid data: armor corrupt") from None


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        head = data[pos]
        if not head & 0x80:
            raise TrustError("openpgp: invalid data: tag byte does not have MSB set")
        if head & 0x40:
            tag = head & 0x3F
            first = data[pos + 1]
            if first < 192:
                length, hdr = first, 2
            elif first < 224:
                length, hdr = ((first - 192) << 8) + data[pos + 2] + 192, 3
            elif first == 255:
                length, hdr = int.from_bytes(data[pos + 2 : pos + 6], "big"), 6
            else:
                raise TrustError("openpgp: unsupported feature: partial body length in key")
        else:
            tag = (head >> 2) & 0x0F
            kind = head & 0x03
            size = (1, 2, 4, 0)[kind]
            if size:
                length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
            else:
                length = len(data) - pos - 1
            hdr = 1 + size
        body = data[pos + hdr : pos + hdr + length]
        if len(body) != length:
            raise TrustError("openpgp: invalid data: short packet")
        out.append((tag, body))
        pos += hdr + length
    return out


# Public-key algorithms rkt 1.30's OpenPGP package reads (RSA, ElGamal, DSA, ECDH, ECDSA);
# an EdDSA key (22, gpg's default today) is refused at trust time, as rkt does.
SUPPORTED_ALGORITHMS = frozenset({1, 2, 3, 16, 17, 18, 19})


def _fingerprint(body: bytes) -> bytes:
    if not body or body[0] != 4:
        raise TrustError("openpgp: unsupported feature: public key version")
    if len(body) > 5 and body[5] not in SUPPORTED_ALGORITHMS:
        raise TrustError(f"openpgp: unsupported feature: public key type: {body[5]}")
    return hashlib.sha1(
        b"\x99" + len(body).to_bytes(2, "big") + body, usedforsecurity=False
    ).digest()


def read_armored_keyring(text: str) -> list[PublicKey]:
    keys: list[PublicKey] = []
    for tag, body in _packets(dearmor(text)):
        if tag == 6:
            keys.append(PublicKey(_fingerprint(body)))
        elif tag == 14 and keys:
            keys[-1].subkeys.append(_fingerprint(body))
        elif tag == 13 and keys:
            keys[-1].identities.append(body.decode("utf-8", "replace"))
    if not keys:
        raise TrustError("openpgp: invalid argument: no armored data found")
    return keys


# -- keystore ----------------------------------------------------------------------------


def store_key(config_dir: Path, prefix: str, armored: str, fingerprint: str) -> Path:
    base = config_dir / "trustedkeys"
    target_dir = base / "prefix.d" / prefix if prefix else base / "root.d"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / fingerprint
    target.write_text(armored)
    return target


def keys_for(config_dirs: list[Path], image_name: str) -> list[Path]:
    """Every trusted key file that applies to ``image_name``."""
    found: list[Path] = []
    parts = image_name.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for config in config_dirs:
        base = config / "trustedkeys"
        dirs = [base / "root.d", *(base / "prefix.d" / p for p in prefixes)]
        for directory in dirs:
            if directory.is_dir():
                found.extend(sorted(p for p in directory.iterdir() if p.is_file()))
    return found


def verify_detached(key_files: list[Path], data_path: Path, asc_path: Path) -> str:
    """Check ``asc_path`` signs ``data_path`` with one of ``key_files``; return the signer."""
    if not key_files:
        raise TrustError("openpgp: signature made by unknown entity")
    gpg = shutil.which("gpg")
    if gpg is None:
        raise TrustError("rkt-sim: gpg is needed to verify image signatures but was not found")
    with tempfile.TemporaryDirectory(prefix="rkt-sim-gpg-") as home:
        imported = subprocess.run(
            [gpg, "--homedir", home, "--batch", "--quiet", "--import", *map(str, key_files)],
            capture_output=True,
            check=False,
        )
        if imported.returncode != 0:
            raise TrustError("openpgp: invalid data: trusted key could not be read")
        result = subprocess.run(
            [
                gpg,
                "--homedir",
                home,
                "--batch",
                "--status-fd",
                "1",
                "--verify",
                str(asc_path),
                str(data_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    status = result.stdout
    for line in status.splitlines():
        if line.startswith("[GNUPG:] GOODSIG "):
            return line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
    if "NO_PUBKEY" in status:
        raise TrustError("openpgp: signature made by unknown entity")
    if "BADSIG" in status:
        raise TrustError("openpgp: invalid signature: hash tag doesn't match")
    raise TrustError("openpgp: invalid data: signature could not be verified")
