"""The PodManifest: generated from prepare's arguments, and serialised in schema order.

Generation follows rkt's stage0 ``generatePodManifest``: each app is a copy of its image's
``app`` with the command-line overrides applied (``--exec`` replaces the exec, ``--``
arguments are appended), environment precedence inherited < image < ``--set-env-file`` <
``--set-env`` < ``--environment``, ``--memory``/``--cpu`` isolators appended, pod-global
mounts applied unless the app mounts the same target, ``acVersion`` is rkt's own version
and the ``coreos.com/rkt/stage1/mutable=false`` annotation is always present.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rkt_sim.appc import (
    AppcError,
    canonical_app,
    check_environment,
    default_app_name,
)
from rkt_sim.grammar import AppArgs, PrepareArgs
from rkt_sim.podspec import canonical_volume

MUTABLE_ANNOTATION = "coreos.com/rkt/stage1/mutable"


class ManifestError(Exception):
    """The pod manifest cannot be generated; the message is rkt's."""


@dataclass(frozen=True)
class ResolvedImage:
    key: str
    manifest: dict[str, Any]


def _merge_env(env: list[dict[str, str]], pairs: list[tuple[str, str]]) -> None:
    for name, value in pairs:
        for item in env:
            if item["name"] == name:
                item["value"] = value
                break
        else:
            env.append({"name": name, "value": value})


def _seccomp_isolator(text: str) -> dict[str, Any]:
    mode = "retain"
    errno = None
    calls: list[str] = []
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if eq and key == "mode":
            mode = value
        elif eq and key == "errno":
            errno = value
        elif item:
            calls.append(item)
    if mode not in ("retain", "remove"):
        raise ManifestError(f'unknown seccomp mode "{mode}"')
    spec: dict[str, Any] = {"set": calls}
    if errno:
        spec["errno"] = errno
    return {"name": f"os/linux/seccomp-{mode}-set", "value": spec}


def _app(
    args: AppArgs,
    image: ResolvedImage,
    pod: PrepareArgs,
    inherited: Mapping[str, str],
    env_file_pairs: list[tuple[str, str]],
) -> dict[str, Any]:
    base = copy.deepcopy(image.manifest.get("app"))
    if args.exec is not None:
        if base is None:
            base = {"exec": [], "user": str(os.getuid()), "group": str(os.getgid())}
        base["exec"] = [args.exec, *args.args]
    elif base is None:
        image_name = image.manifest["name"]
        raise ManifestError(
            f'image "{image_name}" has no app section and --exec argument is not provided'
        )
    else:
        base["exec"] = [*(base.get("exec") or []), *args.args]
    if args.user is not None:
        base["user"] = args.user
    if args.group is not None:
        base["group"] = args.group
    if args.supplementary_gids is not None:
        base["supplementaryGIDs"] = args.supplementary_gids
    if args.working_dir is not None:
        base["workingDirectory"] = args.working_dir
    env: list[dict[str, str]] = [dict(e) for e in base.get("environment") or []]
    _merge_env(env, env_file_pairs)
    _merge_env(env, pod.set_env)
    _merge_env(env, args.environment)
    names = {e["name"] for e in env}
    env.extend({"name": k, "value": v} for k, v in inherited.items() if k not in names)
    try:
        check_environment(env)
    except AppcError as exc:
        raise ManifestError(str(exc)) from None
    base["environment"] = env
    isolators = list(base.get("isolators") or [])
    for iso in args.isolators:
        if iso["name"].startswith("os/linux/") and not iso["name"].startswith(
            "os/linux/capabilities"
        ):
            isolators = [i for i in isolators if i.get("name") != iso["name"]]
        isolators.append(iso)
    if args.seccomp:
        isolators.append(_seccomp_isolator(args.seccomp))
    base["isolators"] = isolators
    if args.user_annotations:
        base["userAnnotations"] = dict(args.user_annotations)
    if args.user_labels:
        base["userLabels"] = dict(args.user_labels)
    return canonical_app(base)


def generate(
    pod: PrepareArgs,
    images: list[ResolvedImage],
    *,
    rkt_version: str,
    inherited: Mapping[str, str],
    env_file_pairs: list[tuple[str, str]],
) -> tuple[dict[str, Any], list[str]]:
    """Return the PodManifest and the warnings rkt would print while generating it."""
    warnings: list[str] = []
    apps: list[dict[str, Any]] = []
    seen: set[str] = set()
    volumes = [dict(v) for v in pod.volumes]
    for args, image in zip(pod.apps, images, strict=True):
        name = args.name or default_app_name(str(image.manifest["name"]))
        if name in seen:
            raise ManifestError(f'error: multiple apps with name "{name}"')
        seen.add(name)
        app = _app(args, image, pod, inherited, env_file_pairs)
        mounts = [dict(m) for m in args.mounts]
        targets = {m["path"] for m in mounts}
        mounts.extend(dict(m) for m in pod.mounts if m["path"] not in targets)
        runtime: dict[str, Any] = {
            "name": name,
            "image": _image_ref(image),
            "app": app,
            "readOnlyRootFS": bool(args.readonly_rootfs),
            "mounts": mounts,
            "annotations": list(args.annotations),
        }
        apps.append(canonical_runtime_app(runtime))
        mounted = {m["path"] for m in mounts}
        for point in app.get("mountPoints") or []:
            if point["path"] in mounted or any(v["name"] == point["name"] for v in volumes):
                continue
            warnings.append(
                f'warning: no volume specified for mount point "{point["name"]}", implicitly '
                'creating an "empty" volume. This volume will be removed when the pod is '
                "garbage-collected."
            )
            volumes.append(
                canonical_volume(
                    {"name": point["name"], "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}
                )
            )
    for port in pod.ports:
        if not any(
            p.get("name") == port["name"]
            for a in apps
            for p in (a.get("app") or {}).get("ports") or []
        ):
            raise ManifestError(f'port name "{port["name"]}" could not be found in any apps')
    manifest = {
        "acVersion": rkt_version,
        "acKind": "PodManifest",
        "apps": apps,
        "volumes": volumes or None,
        "isolators": None,
        "annotations": [{"name": MUTABLE_ANNOTATION, "value": "false"}],
        "ports": [dict(p) for p in pod.ports] or None,
    }
    return manifest, warnings


def _image_ref(image: ResolvedImage) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": image.manifest["name"], "id": image.key}
    if image.manifest.get("labels"):
        ref["labels"] = [
            {"name": lb["name"], "value": lb["value"]} for lb in image.manifest["labels"]
        ]
    return ref


def canonical_runtime_app(runtime: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": runtime.get("name", ""), "image": {}}
    image = runtime.get("image") or {}
    for key in ("name", "id", "labels"):
        if image.get(key):
            out["image"][key] = image[key]
    if runtime.get("app"):
        out["app"] = canonical_app(runtime["app"])
    if runtime.get("readOnlyRootFS"):
        out["readOnlyRootFS"] = True
    if runtime.get("mounts"):
        out["mounts"] = [
            {k: m[k] for k in ("volume", "path", "appVolume") if m.get(k)}
            for m in runtime["mounts"]
        ]
    if runtime.get("annotations"):
        out["annotations"] = runtime["annotations"]
    return out


def canonical_pod(manifest: dict[str, Any]) -> dict[str, Any]:
    """Re-serialise a PodManifest through the schema's field order (``cat-manifest``)."""
    out: dict[str, Any] = {
        "acVersion": manifest.get("acVersion", ""),
        "acKind": manifest.get("acKind", "PodManifest"),
        "apps": [canonical_runtime_app(a) for a in manifest.get("apps") or []],
        "volumes": [canonical_volume(v) for v in manifest.get("volumes") or []] or None,
        "isolators": manifest.get("isolators") or None,
        "annotations": manifest.get("annotations") or None,
        "ports": manifest.get("ports") or None,
    }
    for key in ("userAnnotations", "userLabels"):
        if manifest.get(key):
            out[key] = manifest[key]
    return out
