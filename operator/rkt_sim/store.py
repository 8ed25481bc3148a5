"""The image store under ``<dir>/cas``: import real ACI archives, look images up.

Layout (rkt keeps a SQL db; the simulator keeps one JSON index with the same facts):

* ``cas/db.json``: ``{"images": {key: record}, "remotes": {url: key}}`` where a record holds
  the image name, labels, import and last-used times (ns) and size; ``remotes`` maps a remote
  reference (``docker://...``, ``https://...aci``) to the image imported for it;
* ``cas/blob/<key>``: the uncompressed tar; ``cas/imageManifest/<key>``: its manifest;
* ``cas/tree/<key>/{manifest,rootfs/}``: the extracted tree that pods use.

Keys are ``sha512-`` plus the first 64 hex digits of the sha512 of the *uncompressed* tar.
Writers hold ``cas/db.lock``; the index is replaced atomically so readers need no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkt_sim.appc import AppcError, check_image_manifest

KEY_HEX = 64


class StoreError(Exception):
    """An image cannot be imported or found; the message is rkt's innermost error text."""


@dataclass(frozen=True)
class Image:
    key: str
    name: str
    labels: list[dict[str, str]]
    import_time: int
    last_used: int
    size: int

    def label(self, name: str) -> str | None:
        for label in self.labels:
            if label.get("name") == name:
                return str(label.get("value"))
        return None


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        import gzip

        return gzip.decompress(data)
    if data[:3] == b"BZh":
        import bz2

        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.decompress(data)
    return data


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def read_aci(data: bytes) -> tuple[bytes, dict[str, Any], list[tarfile.TarInfo]]:
    """Validate an ACI archive; return the uncompressed tar, the manifest and the members."""
    raw = _decompress(data)
    try:
        archive = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")  # noqa: SIM115 - in memory
        members = archive.getmembers()
    except tarfile.TarError as exc:
        raise StoreError(f"error reading tarball: {exc}") from None
    seen: set[str] = set()
    manifest_member = None
    has_rootfs = False
    for member in members:
        name = _clean(member.name)
        if name in ("", "."):
            continue
        if name in seen:
            raise StoreError(f"duplicate file entry in layout: {name!r}")
        seen.add(name)
        if name == "manifest":
            if not member.isfile():
                raise StoreError("image manifest is not a regular file")
            manifest_member = member
        elif name == "rootfs":
            if not member.isdir():
                raise StoreError("rootfs is not a directory")
            has_rootfs = True
        elif name.startswith("rootfs/"):
            has_rootfs = True
        else:
            raise StoreError(f'unrecognized file path in layout: "{name}"')
    if manifest_member is None:
        raise StoreError("no image manifest found in layout")
    if not has_rootfs:
        raise StoreError("no rootfs found in layout")
    extracted = archive.extractfile(manifest_member)
    try:
        if extracted is None:
            raise ValueError("image manifest is not a regular file")
        manifest = check_image_manifest(json.loads(extracted.read()))
    except (ValueError, AppcError) as exc:
        raise StoreError(f"image manifest validation failed: {exc}") from None
    return raw, manifest, members


def _extract(archive: tarfile.TarFile, target: Path) -> None:
    """Extract without letting a member escape ``target`` (tarfile's "tar" filter)."""
    if hasattr(tarfile, "tar_filter"):
        archive.extractall(target, filter="tar")
        return
    # Pythons without extraction filters (before 3.11.4): check the names ourselves, and
    # refuse writing below a symlink the archive itself created.
    symlinks: set[str] = set()
    for member in archive.getmembers():
        name = _clean(member.name)
        parts = Path(name).parts
        if member.name.startswith("/") or ".." in parts:
            raise StoreError(f"invalid file path in layout: {member.name!r}")
        link = Path(member.linkname).parts
        if member.islnk() and (member.linkname.startswith("/") or ".." in link):
            raise StoreError(f"invalid hard link in layout: {member.name!r}")
        if any("/".join(parts[:i]) in symlinks for i in range(1, len(parts))):
            raise StoreError(f"file path through a symlink in layout: {member.name!r}")
        if member.issym():
            symlinks.add(name)
    archive.extractall(target)  # noqa: S202 - members checked above


def image_key(raw_tar: bytes) -> str:
    return "sha512-" + hashlib.sha512(raw_tar).hexdigest()[:KEY_HEX]


class ImageStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "cas"
        self._index: dict[str, Any] | None = None

    # -- index ------------------------------------------------------------------------------
    @property
    def index(self) -> dict[str, Any]:
        if self._index is None:
            try:
                self._index = json.loads((self.root / "db.json").read_text())
            except FileNotFoundError:
                self._index = {"images": {}, "remotes": {}}
        return self._index

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "db.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._index = None
            index = self.index
            yield index
            tmp = self.root / f".db.json.{os.getpid()}"
            tmp.write_text(json.dumps(index, indent=1))
            tmp.replace(self.root / "db.json")

    def images(self) -> list[Image]:
        return [self._image(k, r) for k, r in self.index["images"].items()]

    @staticmethod
    def _image(key: str, rec: dict[str, Any]) -> Image:
        return Image(
            key, rec["name"], rec["labels"], rec["import_time"], rec["last_used"], rec["size"]
        )

    def get(self, key: str) -> Image | None:
        rec = self.index["images"].get(key)
        return self._image(key, rec) if rec else None

    def manifest(self, key: str) -> dict[str, Any]:
        return dict(json.loads((self.root / "imageManifest" / key).read_text()))

    def tree(self, key: str) -> Path:
        return self.root / "tree" / key

    # -- import -----------------------------------------------------------------------------
    def import_bytes(self, data: bytes, *, remote: str | None = None) -> str:
        raw, manifest, members = read_aci(data)
        key = image_key(raw)
        self._write(key, raw, manifest, members, len(data), remote)
        return key

    def _write(
        self,
        key: str,
        raw: bytes,
        manifest: dict[str, Any],
        members: list[tarfile.TarInfo],
        size: int,
        remote: str | None,
    ) -> None:
        for sub in ("blob", "imageManifest", "tree"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        tree = self.tree(key)
        if not tree.is_dir():
            staging = self.root / "tree" / f".{key}.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
                _extract(archive, staging)
            (staging / "rootfs").mkdir(exist_ok=True)
            try:
                staging.rename(tree)
            except OSError:  # another importer won the race with the same content
                shutil.rmtree(staging, ignore_errors=True)
        if not (self.root / "imageManifest" / key).is_file():
            (self.root / "blob" / key).write_bytes(raw)
            (self.root / "imageManifest" / key).write_text(json.dumps(manifest))
        tree_size = sum(m.size for m in members if m.isfile())
        now = time.time_ns()
        with self._writing() as index:
            rec = index["images"].get(key)
            index["images"][key] = {
                "name": manifest["name"],
                "labels": list(manifest.get("labels") or []),
                "import_time": rec["import_time"] if rec else now,
                "last_used": rec["last_used"] if rec else now,
                "size": size + tree_size,
                "seq": max((r.get("seq", 0) for r in index["images"].values()), default=0) + 1,
            }
            if remote is not None:
                index["remotes"][remote] = key

    def touch(self, keys: list[str]) -> None:
        now = time.time_ns()
        with self._writing() as index:
            for key in keys:
                if key in index["images"]:
                    index["images"][key]["last_used"] = now

    def remove(self, key: str) -> None:
        with self._writing() as index:
            index["images"].pop(key, None)
            for url in [u for u, k in index["remotes"].items() if k == key]:
                del index["remotes"][url]
        shutil.rmtree(self.tree(key), ignore_errors=True)
        for sub in ("blob", "imageManifest"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / sub / key).unlink()

    # -- lookup -----------------------------------------------------------------------------
    def by_id_prefix(self, text: str) -> str:
        """``sha512-<hex prefix>``: at least 2 hex digits, unambiguous."""
        hexpart = text.split("-", 1)[1] if "-" in text else ""
        if len(hexpart) < 2:
            raise StoreError("image ID too short")
        hexpart = hexpart[:KEY_HEX].lower()
        matches = [k for k in self.index["images"] if k[len("sha512-") :].startswith(hexpart)]
        if len(matches) > 1:
            raise StoreError("ambiguous image ID")
        if not matches:
            raise StoreError("no image IDs found")
        return str(matches[0])

    def by_name(self, name: str, labels: dict[str, str]) -> str | None:
        """The most recently imported image with this name carrying every requested label."""
        best: tuple[int, str] | None = None
        for key, rec in self.index["images"].items():
            if rec["name"] != name:
                continue
            have = {lb["name"]: lb["value"] for lb in rec["labels"]}
            if any(have.get(k) != v for k, v in labels.items()):
                continue
            rank = (rec.get("seq", 0), key)
            if best is None or rank > best:
                best = rank
        return best[1] if best else None

    def by_remote(self, url: str) -> str | None:
        key = self.index["remotes"].get(url)
        return str(key) if key in self.index["images"] else None
