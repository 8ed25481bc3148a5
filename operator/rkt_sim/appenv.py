"""What an app of a pod runs with: its rootfs, mounts, user, group and environment.

Shared by ``run-prepared`` (starting the app) and ``enter`` (running a command beside it).
Paths follow rkt's pod layout: the app's root is ``stage1/rootfs/opt/stage2/<app>/rootfs``;
with overlay, its upper and work directories are ``overlay/<image key>/{upper,work}/<app>``.
``empty`` volumes live in ``<pod>/volumes/<name>`` (simulator layout).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rkt_sim.isolation import Bind

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class AppSetupError(Exception):
    """The app cannot be set up (stage1's failure, exit 254)."""


def stage2_rootfs(pod_dir: Path, app_name: str) -> Path:
    return pod_dir / "stage1" / "rootfs" / "opt" / "stage2" / app_name / "rootfs"


def overlay_dirs(pod_dir: Path, image_key: str, app_name: str) -> tuple[Path, Path]:
    base = pod_dir / "overlay" / image_key
    return base / "upper" / app_name, base / "work" / app_name


def uses_overlay(pod_dir: Path) -> bool:
    return (pod_dir / "overlay-prepared").exists()


def lookup_root(data_dir: Path, pod_dir: Path, runtime_app: dict[str, Any]) -> Path:
    """A directory with the app's files as prepared (the image tree, or the copy)."""
    if uses_overlay(pod_dir):
        return data_dir / "cas" / "tree" / str(runtime_app["image"]["id"]) / "rootfs"
    return stage2_rootfs(pod_dir, runtime_app["name"])


def _lookup(db: Path, key: str, kind: str) -> int:
    try:
        lines = db.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == key:
            try:
                return int(fields[2])
            except ValueError:
                break
    raise AppSetupError(f'{kind} "{key}" not found in the image\'s /etc/{db.name}')


def resolve_ids(root: Path, app: dict[str, Any]) -> tuple[int, int]:
    """appc users and groups: a number, a name from the image's passwd/group, or a path."""
    resolved: list[int] = []
    for kind, db in (("user", "passwd"), ("group", "group")):
        value = str(app.get(kind, "0"))
        if value.isdigit():
            resolved.append(int(value))
        elif value.startswith("/"):
            try:
                info = os.stat(root / value.lstrip("/"))
            except OSError:
                raise AppSetupError(f'{kind} path "{value}" not found in the image') from None
            resolved.append(info.st_uid if kind == "user" else info.st_gid)
        else:
            resolved.append(_lookup(root / "etc" / db, value, kind))
    return resolved[0], resolved[1]


def volume_source(pod_dir: Path, volume: dict[str, Any]) -> str:
    if volume.get("kind") == "host":
        return str(volume["source"])
    path = pod_dir / "volumes" / str(volume["name"])
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, int(str(volume.get("mode", "0755")), 8))
        if os.geteuid() == 0:
            os.chown(path, int(volume.get("uid", 0)), int(volume.get("gid", 0)))
    return str(path)


def binds_for(pod_dir: Path, manifest: dict[str, Any], runtime_app: dict[str, Any]) -> list[Bind]:
    volumes = {v["name"]: v for v in manifest.get("volumes") or []}
    app = runtime_app.get("app") or {}
    points = {p["name"]: p for p in app.get("mountPoints") or []}
    binds: list[Bind] = []
    taken: set[str] = set()
    for mount in runtime_app.get("mounts") or []:
        volume = volumes.get(mount.get("volume"))
        if volume is None:
            raise AppSetupError(
                f'no volume "{mount.get("volume")}" for mount at "{mount.get("path")}"'
            )
        point = points.get(mount["volume"], {})
        read_only = bool(volume.get("readOnly")) or bool(point.get("readOnly"))
        binds.append(Bind(volume_source(pod_dir, volume), str(mount["path"]), read_only))
        taken.add(str(mount["path"]))
    for name, point in points.items():
        volume = volumes.get(name)
        if volume is None or point["path"] in taken:
            continue
        read_only = bool(volume.get("readOnly")) or bool(point.get("readOnly"))
        binds.append(Bind(volume_source(pod_dir, volume), str(point["path"]), read_only))
    return binds


def environment(runtime_app: dict[str, Any]) -> dict[str, str]:
    app = runtime_app.get("app") or {}
    env = {str(e["name"]): str(e["value"]) for e in app.get("environment") or []}
    env.setdefault("PATH", DEFAULT_PATH)
    env["AC_APP_NAME"] = str(runtime_app["name"])
    return env
