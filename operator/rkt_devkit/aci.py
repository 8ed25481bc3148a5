"""Build real ACI files (appc image archives) for tests and the demo.

An ACI is a tar (optionally gzip-compressed) with exactly two top-level entries: the
``manifest`` (an ImageManifest) and the ``rootfs/`` directory. With ``busybox=True`` the
rootfs gets the host's static busybox (Debian's busybox-static) at ``/bin/busybox`` and
relative symlinks for the common applets, plus ``/etc/passwd`` and ``/etc/group`` with
root, nobody (65534) and nogroup, so a chrooted app runs with no libraries at all.
"""

from __future__ import annotations

import functools
import gzip as gzip_module
import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

APPLETS = (
    "sh",
    "ash",
    "sleep",
    "echo",
    "cat",
    "ls",
    "env",
    "id",
    "httpd",
    "nc",
    "ps",
    "true",
    "false",
    "wget",
    "mkdir",
    "touch",
    "kill",
    "test",
    "printf",
    "hostname",
    "grep",
    "rm",
    "cp",
    "mv",
    "pwd",
    "whoami",
    "stat",
    "head",
    "tail",
    "wc",
    "date",
    "seq",
    "timeout",
    "ip",
    "netstat",
    "sed",
    "awk",
    "tee",
    "readlink",
    "uname",
)
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"  # noqa: S105
GROUP = "root:x:0:\nnogroup:x:65534:\n"
DEFAULT_LABELS = (("os", "linux"), ("arch", "amd64"))


class BusyboxNotFound(RuntimeError):
    """The host has no static busybox (install Debian's ``busybox-static``)."""


def find_busybox() -> Path:
    found = shutil.which("busybox")
    if found is None:
        raise BusyboxNotFound("busybox is not installed: install the busybox-static package")
    return Path(found)


@functools.cache
def busybox_applets() -> frozenset[str]:
    """The applets the host's busybox was built with (``busybox --list``)."""
    listed = subprocess.run(
        [str(find_busybox()), "--list"], capture_output=True, text=True, check=True
    ).stdout
    return frozenset(listed.split())


def image_manifest(
    *,
    name: str,
    version: str | None,
    exec: Sequence[str] | None,
    ports: Sequence[Mapping[str, Any]] = (),
    environment: Mapping[str, str] | None = None,
    mount_points: Sequence[Mapping[str, Any]] = (),
    user: str = "0",
    group: str = "0",
    labels: Sequence[tuple[str, str]] = DEFAULT_LABELS,
    isolators: Sequence[Mapping[str, Any]] = (),
    working_directory: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ImageManifest document; ``exec=None`` gives an image without an app section."""
    all_labels = [{"name": "version", "value": version}] if version else []
    all_labels += [{"name": k, "value": v} for k, v in labels]
    manifest: dict[str, Any] = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name}
    if all_labels:
        manifest["labels"] = all_labels
    if exec is not None:
        app: dict[str, Any] = {"exec": list(exec), "user": user, "group": group}
        if working_directory:
            app["workingDirectory"] = working_directory
        if environment:
            app["environment"] = [{"name": k, "value": v} for k, v in environment.items()]
        if mount_points:
            app["mountPoints"] = [dict(m) for m in mount_points]
        if ports:
            app["ports"] = [{"protocol": "tcp", **dict(p)} for p in ports]
        if isolators:
            app["isolators"] = [dict(i) for i in isolators]
        manifest["app"] = app
    if annotations:
        manifest["annotations"] = [{"name": k, "value": v} for k, v in annotations.items()]
    return manifest


def _add(
    archive: tarfile.TarFile,
    name: str,
    *,
    data: bytes | None = None,
    mode: int = 0o644,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = int(time.time())
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if kind == tarfile.SYMTYPE:
        info.linkname = link
        archive.addfile(info)
    elif kind == tarfile.DIRTYPE:
        archive.addfile(info)
    else:
        payload = data or b""
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))


def build_aci(
    path: str | Path,
    *,
    name: str,
    version: str | None = "1.0.0",
    exec: Sequence[str] | None = ("/bin/sleep", "3600"),
    ports: Sequence[Mapping[str, Any]] = (),
    environment: Mapping[str, str] | None = None,
    mount_points: Sequence[Mapping[str, Any]] = (),
    user: str = "0",
    group: str = "0",
    files: Mapping[str, str | bytes] | None = None,
    busybox: bool = True,
    gzip: bool = False,
    labels: Sequence[tuple[str, str]] = DEFAULT_LABELS,
    isolators: Sequence[Mapping[str, Any]] = (),
    working_directory: str | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write an ACI to ``path`` and return it.

    ``files`` maps rootfs paths (``/etc/motd``) to contents; executables given there get mode
    0755 when their content starts with ``#!``. ``manifest`` replaces the generated manifest
    entirely (for tests of invalid images).
    """
    target = Path(path)
    doc = (
        dict(manifest)
        if manifest is not None
        else image_manifest(
            name=name,
            version=version,
            exec=exec,
            ports=ports,
            environment=environment,
            mount_points=mount_points,
            user=user,
            group=group,
            labels=labels,
            isolators=isolators,
            working_directory=working_directory,
        )
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, "manifest", data=json.dumps(doc, indent=2).encode())
        _add(archive, "rootfs", kind=tarfile.DIRTYPE, mode=0o755)
        dirs = {"rootfs/bin", "rootfs/etc", "rootfs/tmp", "rootfs/dev", "rootfs/proc"}
        for rel in files or {}:
            parts = Path("rootfs", rel.lstrip("/")).parts
            dirs.update(str(Path(*parts[:i])) for i in range(2, len(parts)))
        for directory in sorted(dirs):
            _add(
                archive,
                directory,
                kind=tarfile.DIRTYPE,
                mode=0o1777 if directory == "rootfs/tmp" else 0o755,
            )
        _add(archive, "rootfs/etc/passwd", data=PASSWD.encode())
        _add(archive, "rootfs/etc/group", data=GROUP.encode())
        if busybox:
            _add(archive, "rootfs/bin/busybox", data=find_busybox().read_bytes(), mode=0o755)
            available = busybox_applets()
            for applet in (a for a in APPLETS if a in available):
                _add(archive, f"rootfs/bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        for rel, content in (files or {}).items():
            data = content.encode() if isinstance(content, str) else content
            mode = 0o755 if data.startswith(b"#!") else 0o644
            _add(archive, str(Path("rootfs", rel.lstrip("/"))), data=data, mode=mode)
    raw = buffer.getvalue()
    target.write_bytes(gzip_module.compress(raw) if gzip else raw)
    return target
