"""``rkt prepare``: resolve the images, write a real PodManifest and pod directory.

The pod goes ``pods/embryo/<uuid>`` -> ``pods/prepare/<uuid>`` (locked while being filled)
-> ``pods/prepared/<uuid>``; the UUID is printed last. With overlay (root and a kernel
with overlayfs, unless ``--no-overlay``) the app trees stay in the store and each app gets
``overlay/<key>/{upper,work}/<app>``; otherwise the image tree is copied into
``stage1/rootfs/opt/stage2/<app>/rootfs`` (always so when not running as root).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import uuid as uuidlib
from pathlib import Path
from typing import Any

from rkt_sim import appenv, fetching, gofmt, pods
from rkt_sim.context import Context
from rkt_sim.errors import SimError
from rkt_sim.grammar import PrepareArgs, parse_prepare
from rkt_sim.manifest import ManifestError, ResolvedImage, generate
from rkt_sim.store import ImageStore

USAGE = (
    "Usage:\n  rkt prepare [--volume=name,kind=host,...] [--mount=volume=NAME,target=PATH] "
    "[--quiet] IMAGE [-- image-args...[---]]...\n"
)
STAGE1_FLAGS = ("stage1-url", "stage1-path", "stage1-name", "stage1-hash", "stage1-from-dir")
_MANIFEST_CONFLICTS = ("volume", "mount", "port", "inherit-env", "set-env", "set-env-file")

parse = parse_prepare


def _pull_policy(args: PrepareArgs) -> str:
    policy = args.flag("pull-policy") or "new"
    if args.boolean("store-only"):
        policy = "never"
    if args.boolean("no-store"):
        policy = "update"
    if policy not in ("never", "new", "update"):
        raise SimError(f'unknown pull policy "{policy}": must be one of never, new or update')
    return policy


def _check_stage1(args: PrepareArgs) -> None:
    given = [f for f in STAGE1_FLAGS if args.given(f)]
    if len(given) > 1:
        raise SimError(f"flags --{given[0]} and --{given[1]} are mutually exclusive")


def overlay_supported() -> str | None:
    """``None`` when overlay can be used, else the reason rkt would print."""
    if os.geteuid() != 0:
        return "overlay requires root"
    try:
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "overlay filesystem not supported by the kernel"
    except OSError:
        return "cannot read /proc/filesystems"
    return None


def run(ctx: Context, args: PrepareArgs) -> int:
    ctx.require_root()
    _check_stage1(args)
    if args.flag("pod-manifest"):
        return _run_with_manifest(ctx, args)
    if not args.apps:
        raise SimError("must provide at least one image or specify the pod manifest")
    policy = _pull_policy(args)
    store = ImageStore(ctx.data_dir)
    images: list[ResolvedImage] = []
    for app in args.apps:
        try:
            key = fetching.resolve(
                ctx, store, app.image, signature=app.signature, pull_policy=policy
            )
        except fetching.FetchError as exc:
            raise SimError(f"error finding images: {exc}") from None
        images.append(ResolvedImage(key, store.manifest(key)))
    inherit = args.boolean("inherit-env")
    try:
        manifest, warnings = generate(
            args,
            images,
            rkt_version=ctx.sim.rkt_version,
            inherited=ctx.environ if inherit else {},
            env_file_pairs=args.set_env_file_pairs,
        )
    except ManifestError as exc:
        raise _stage0_failed(ctx, str(exc)) from None
    for warning in warnings:
        ctx.err(warning)
    no_overlay = args.boolean("no-overlay")
    store.touch([i.key for i in images])
    return _create_pod(ctx, gofmt.dumps(manifest).encode(), manifest, images, no_overlay)


def _run_with_manifest(ctx: Context, args: PrepareArgs) -> int:
    conflicts = [f for f in _MANIFEST_CONFLICTS if args.given(f)]
    if args.apps or conflicts or args.flag("pull-policy") in ("never", "update"):
        raise SimError("conflicting flags set with --pod-manifest (see --help)")
    path = Path(str(args.flag("pod-manifest")))
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise _stage0_failed(ctx, f"cannot read pod manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("acKind") != "PodManifest":
        raise _stage0_failed(ctx, 'missing or bad ACKind (must be "PodManifest")')
    store = ImageStore(ctx.data_dir)
    images: list[ResolvedImage] = []
    for app in manifest.get("apps") or []:
        key = str((app.get("image") or {}).get("id", ""))
        if store.get(key) is None:
            raise _stage0_failed(ctx, f'image "{key}" not found in the store')
        images.append(ResolvedImage(key, store.manifest(key)))
    no_overlay = args.boolean("no-overlay")
    return _create_pod(ctx, raw, manifest, images, no_overlay)


def _stage0_failed(ctx: Context, message: str) -> SimError:
    """rkt creates the pod before stage0's checks: when they fail, the pod stays behind in
    ``pods/prepare`` without its lock, an ``aborted prepare`` pod only ``rm``/``gc`` remove."""
    pods.ensure_layout(ctx.data_dir)
    root = pods.pods_root(ctx.data_dir)
    uuid = str(uuidlib.uuid4())
    (root / "embryo" / uuid).mkdir(mode=0o750)
    (root / "embryo" / uuid).rename(root / "prepare" / uuid)
    return SimError(f"error setting up stage0: {message}")


def _create_pod(
    ctx: Context,
    raw: bytes,
    manifest: dict[str, Any],
    images: list[ResolvedImage],
    no_overlay: bool,
) -> int:
    pods.ensure_layout(ctx.data_dir)
    if not no_overlay and (reason := overlay_supported()) is not None:
        ctx.err(f'disabling overlay support: "{reason}"')
        no_overlay = True
    uuid = str(uuidlib.uuid4())
    root = pods.pods_root(ctx.data_dir)
    embryo = root / "embryo" / uuid
    embryo.mkdir(mode=0o750)
    fd = pods.open_dir(embryo)
    fcntl.flock(fd, fcntl.LOCK_EX)
    preparing = root / "prepare" / uuid
    embryo.rename(preparing)
    try:
        _fill(ctx, preparing, raw, manifest, images, no_overlay)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SimError(f"error setting up stage0: {exc}") from None
    preparing.rename(root / "prepared" / uuid)
    os.close(fd)
    ctx.out(uuid)
    return 0


def _fill(
    ctx: Context,
    pod_dir: Path,
    raw: bytes,
    manifest: dict[str, Any],
    images: list[ResolvedImage],
    no_overlay: bool,
) -> None:
    (pod_dir / "pod").write_bytes(raw)
    (pod_dir / "pod.lck").touch()
    stage1 = pod_dir / "stage1"
    (stage1 / "rootfs" / "rkt" / "status").mkdir(parents=True)
    stage1_manifest = {
        "acKind": "ImageManifest",
        "acVersion": ctx.sim.appc_version,
        "name": "coreos.com/rkt/stage1-coreos",
        "labels": [{"name": "version", "value": ctx.sim.rkt_version}],
    }
    (stage1 / "manifest").write_text(json.dumps(stage1_manifest))
    if not no_overlay:
        (pod_dir / "overlay-prepared").touch()
    tree_root = ctx.data_dir / "cas" / "tree"
    for runtime_app, image in zip(manifest.get("apps") or [], images, strict=True):
        name = str(runtime_app["name"])
        info = pod_dir / "appsinfo" / name
        info.mkdir(parents=True)
        (info / "manifest").write_text(json.dumps(image.manifest))
        rootfs = appenv.stage2_rootfs(pod_dir, name)
        if no_overlay:
            rootfs.parent.mkdir(parents=True, exist_ok=True)
            _copy_tree(tree_root / image.key / "rootfs", rootfs)
        else:
            (info / "treeStoreID").write_text(image.key)
            rootfs.mkdir(parents=True)
            for directory in appenv.overlay_dirs(pod_dir, image.key, name):
                directory.mkdir(parents=True, exist_ok=True)
    # pod-created is written last: its mtime is the pod's creation time.
    (pod_dir / "pod-created").touch()


def _copy_tree(source: Path, target: Path) -> None:
    cp = shutil.which("cp")
    if cp is not None:
        subprocess.run([cp, "-a", "--", str(source), str(target)], check=True)
    else:
        shutil.copytree(source, target, symlinks=True)
