"""Turning an IMAGE argument into a store key, the way rkt's image finder does (§3.5).

Order: a ``sha512-`` hash (store only); a URL with a scheme (``file://`` ACI, ``http(s)://``
ACI, ``docker://``; any other scheme is an appc name such as ``name:version``); without a
scheme an absolute path or existing file is a file, a string with ``:`` a name, one with
``./`` or ending in ``.aci`` a file, anything else a name.

The simulator has no network. Remote references resolve only when an image was registered
for them with ``rkt-sim sim-import-remote URL FILE``; otherwise they fail with an offline
error. Name lookups use the store (labels ``os``/``arch`` default to the host's values);
a miss would need discovery over https and fails the same way.
"""

from __future__ import annotations

import platform
from pathlib import Path
from urllib.parse import urlsplit

from rkt_sim import keys
from rkt_sim.context import Context
from rkt_sim.store import ImageStore, StoreError

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "aarch64", "arm64": "aarch64"}
_ARCH.update({"i386": "i386", "i686": "i386", "armv7l": "armv7l", "armv6l": "armv6l"})
_ARCH.update({"ppc64le": "ppc64le", "s390x": "s390x"})


def host_labels() -> dict[str, str]:
    machine = platform.machine()
    return {"os": "linux", "arch": _ARCH.get(machine, machine)}


class FetchError(Exception):
    """The image cannot be found or imported; the text is rkt's innermost error."""


def classify(ref: str) -> str:
    """One of ``hash``, ``file``, ``http``, ``docker``, ``name``."""
    if ref.startswith("sha512-"):
        return "hash"
    scheme = urlsplit(ref).scheme if ":" in ref else ""
    if scheme in ("file", "http", "https") and ref.endswith(".aci"):
        return "file" if scheme == "file" else "http"
    if scheme == "docker":
        return "docker"
    if scheme:
        return "name"
    path = Path(ref)
    if ref.startswith("/") or path.is_file():
        return "file"
    if ":" in ref:
        return "name"
    if "./" in ref or ref.endswith(".aci"):
        return "file"
    return "name"


def parse_name(ref: str) -> tuple[str, dict[str, str]]:
    """``NAME[:VERSION][,label=value...]`` into the name and the requested labels."""
    head, *extra = ref.split(",")
    name, colon, version = head.partition(":")
    if ":" in version:
        raise FetchError(f'malformed image name "{ref}": too many colons')
    labels = host_labels()
    if colon:
        labels["version"] = version
    for item in extra:
        key, eq, value = item.partition("=")
        if not eq:
            raise FetchError(f'malformed label "{item}" in image name "{ref}"')
        labels[key] = value
    return name, labels


def docker_url(ref: str) -> str:
    """Normalise ``docker:nginx`` / ``docker://nginx`` to ``docker://nginx:latest``."""
    rest = ref.split(":", 1)[1].lstrip("/")
    last = rest.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        rest += ":latest"
    return "docker://" + rest


def _offline(ref: str) -> FetchError:
    return FetchError(
        f'unable to fetch image "{ref}": rkt-sim is offline and the store has no copy '
        '(register one with "rkt-sim sim-import-remote URL FILE")'
    )


def import_file(ctx: Context, store: ImageStore, path: str, signature: str | None) -> str:
    file_path = Path(urlsplit(path).path if path.startswith("file://") else path).absolute()
    try:
        data = file_path.read_bytes()
    except OSError as exc:
        raise FetchError(f"open {file_path}: {(exc.strerror or str(exc)).lower()}") from None
    if not ctx.skip_image_check():
        _verify(ctx, store, file_path, data, signature)
    try:
        return store.import_bytes(data)
    except StoreError as exc:
        raise FetchError(str(exc)) from None


UNKNOWN_SIGNER = "openpgp: signature made by unknown entity"


def _verify(
    ctx: Context, store: ImageStore, file_path: Path, data: bytes, signature: str | None
) -> None:
    from rkt_sim.store import read_aci

    asc = Path(signature) if signature else Path(str(file_path).removesuffix(".aci") + ".aci.asc")
    if not asc.is_file():
        raise FetchError(f"open {asc}: no such file or directory")
    try:
        _, manifest, _ = read_aci(data)
    except StoreError as exc:
        raise FetchError(str(exc)) from None
    configs = [ctx.system_config, ctx.local_config]
    try:
        keys.verify_detached(keys.keys_for(configs, manifest["name"]), file_path, asc)
    except keys.TrustError as exc:
        if str(exc) == UNKNOWN_SIGNER:
            # rkt's image package logs this hint (its own "image:" prefix) before the error.
            ctx.err("If you expected the signing key to change, try running:", prefix="image")
            ctx.err("    rkt trust --prefix <image>", prefix="image")
        raise FetchError(str(exc)) from None


def resolve(
    ctx: Context,
    store: ImageStore,
    ref: str,
    *,
    signature: str | None = None,
    pull_policy: str = "new",
) -> str:
    """Return the store key for ``ref``, importing a file on every call as rkt does."""
    kind = classify(ref)
    try:
        if kind == "hash":
            return store.by_id_prefix(ref)
    except StoreError as exc:
        raise FetchError(str(exc)) from None
    if kind == "file":
        if pull_policy == "never":
            raise FetchError(f'file "{ref}" cannot be used with --pull-policy=never')
        return import_file(ctx, store, ref, signature)
    if kind == "docker":
        url = docker_url(ref)
        if not ctx.skip_image_check():
            raise FetchError(
                "signature verification for docker images is not supported "
                "(try --insecure-options=image)"
            )
        return store.by_remote(url) or _raise(_offline(url))
    if kind == "http":
        if ref.startswith("http://") and "http" not in ctx.insecure:
            raise FetchError("http URLs are not allowed without --insecure-options=http")
        key = store.by_remote(ref)
        if key is None:
            raise _offline(ref)
        if not ctx.skip_image_check():
            raise FetchError(
                f'rkt-sim is offline: cannot download the signature of "{ref}" '
                "(use --insecure-options=image)"
            )
        return key
    name, labels = parse_name(ref)
    key = store.by_name(name, labels)
    if key is not None:
        return key
    if pull_policy == "never":
        raise FetchError(f'unable to find image "{ref}" in the store (--pull-policy=never)')
    raise _offline(ref)


def _raise(exc: FetchError) -> str:
    raise exc
