"""The ACI builder: real appc archives with a runnable busybox rootfs."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from rkt_devkit.aci import build_aci, busybox_applets


def tar_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def read(path: Path) -> tuple[dict[str, Any], dict[str, tarfile.TarInfo], dict[str, bytes]]:
    """The manifest, the members by name, and the content of every regular file."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(path)), mode="r:") as archive:
        members = {m.name: m for m in archive.getmembers()}
        contents: dict[str, bytes] = {}
        for name, member in members.items():
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is not None:
                contents[name] = extracted.read()
    return json.loads(contents["manifest"]), members, contents


def test_layout_has_exactly_manifest_and_rootfs(tmp_path: Path) -> None:
    path = build_aci(tmp_path / "a.aci", name="example.com/a")
    _, members, _ = read(path)
    assert {name.split("/")[0] for name in members} == {"manifest", "rootfs"}
    assert members["rootfs"].isdir()
    assert len(members) == len(set(members))


def test_manifest_fields(tmp_path: Path) -> None:
    path = build_aci(
        tmp_path / "web.aci",
        name="example.com/web",
        version="2.1.0",
        exec=["/bin/httpd", "-f"],
        ports=[{"name": "http", "port": 8080}],
        environment={"MODE": "test"},
        mount_points=[{"name": "data", "path": "/data", "readOnly": True}],
        user="nobody",
        group="nogroup",
    )
    manifest, _, _ = read(path)
    assert manifest["acKind"] == "ImageManifest"
    assert manifest["acVersion"] == "0.8.11"
    assert manifest["name"] == "example.com/web"
    assert manifest["labels"] == [
        {"name": "version", "value": "2.1.0"},
        {"name": "os", "value": "linux"},
        {"name": "arch", "value": "amd64"},
    ]
    assert manifest["app"] == {
        "exec": ["/bin/httpd", "-f"],
        "user": "nobody",
        "group": "nogroup",
        "environment": [{"name": "MODE", "value": "test"}],
        "mountPoints": [{"name": "data", "path": "/data", "readOnly": True}],
        "ports": [{"protocol": "tcp", "name": "http", "port": 8080}],
    }


def test_image_without_app_section(tmp_path: Path) -> None:
    manifest, _, _ = read(build_aci(tmp_path / "b.aci", name="example.com/b", exec=None))
    assert "app" not in manifest


def test_busybox_and_applet_symlinks(tmp_path: Path) -> None:
    _, members, _ = read(build_aci(tmp_path / "c.aci", name="example.com/c"))
    busybox = members["rootfs/bin/busybox"]
    assert busybox.isfile()
    assert busybox.mode & 0o111
    for applet in ("sh", "sleep", "echo", "cat", "ps", "id", "httpd", "nc", "env"):
        link = members[f"rootfs/bin/{applet}"]
        assert link.issym()
        assert link.linkname == "busybox"
        assert applet in busybox_applets()


def test_passwd_and_group_know_nobody(tmp_path: Path) -> None:
    _, _, contents = read(build_aci(tmp_path / "d.aci", name="example.com/d"))

    def text(name: str) -> str:
        return contents[name].decode()

    assert "nobody:x:65534:65534:" in text("rootfs/etc/passwd")
    assert "root:x:0:0:" in text("rootfs/etc/passwd")
    assert "nogroup:x:65534:" in text("rootfs/etc/group")


def test_extra_files_and_gzip(tmp_path: Path) -> None:
    path = build_aci(
        tmp_path / "e.aci",
        name="example.com/e",
        gzip=True,
        files={"/etc/motd": "hello\n", "/usr/local/bin/run": "#!/bin/sh\necho run\n"},
    )
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    _, members, contents = read(path)
    assert members["rootfs/usr/local/bin"].isdir()
    assert members["rootfs/usr/local/bin/run"].mode == 0o755
    assert members["rootfs/etc/motd"].mode == 0o644
    assert contents["rootfs/etc/motd"] == b"hello\n"


def test_rootfs_runs_without_the_host(tmp_path: Path) -> None:
    """The static busybox from the image runs a shell script on its own."""
    path = build_aci(tmp_path / "f.aci", name="example.com/f")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(path)), mode="r:") as archive:
        archive.extractall(tmp_path / "tree", filter="tar")
    rootfs = tmp_path / "tree" / "rootfs"
    done = subprocess.run(
        [str(rootfs / "bin" / "sh"), "-c", "echo $((6 * 7))"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": str(rootfs / "bin")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42\n"


def test_explicit_manifest_replaces_the_generated_one(tmp_path: Path) -> None:
    doc = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "Not Valid"}
    manifest, _, _ = read(
        build_aci(tmp_path / "g.aci", name="ignored", manifest=doc, busybox=False)
    )
    assert manifest == doc


def test_without_busybox(tmp_path: Path) -> None:
    _, members, _ = read(build_aci(tmp_path / "h.aci", name="example.com/h", busybox=False))
    assert "rootfs/bin/busybox" not in members
    assert "rootfs/etc/passwd" in members
