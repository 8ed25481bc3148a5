"""appc names and the ImageManifest: validation with the schema library's messages.

Owns the AC Identifier / AC Name regexes, label and environment rules, the ImageManifest
checks ``rkt`` applies when an image is imported, and the canonical key order used when a
manifest is serialised again (Go struct order, ``omitempty`` fields dropped).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs rkt-sim start-up time: only the type checker imports it
if TYPE_CHECKING:
    from typing import Any

# Patterns, compiled on first use by re's cache (compiling all at import cost start-up).
AC_IDENTIFIER = r"^[a-z0-9]+([-._~/][a-z0-9]+)*$"
AC_NAME = r"^[a-z0-9]+([-][a-z0-9]+)*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z_0-9.-]*$"
_ID_CHARS = r"^[a-z0-9._~/-]+$"
_NAME_CHARS = r"^[a-z0-9-]+$"
_EDGE = r"^[a-z0-9].*[a-z0-9]$|^[a-z0-9]$"

VALID_OS_ARCH = {
    "linux": (
        "amd64",
        "i386",
        "aarch64",
        "aarch64_be",
        "armv6l",
        "armv7l",
        "armv7b",
        "ppc64",
        "ppc64le",
        "s390x",
    ),
    "freebsd": ("amd64", "i386", "arm"),
    "darwin": ("x86_64", "i386"),
}


class AppcError(ValueError):
    """A value breaks an appc schema rule; the message is the schema library's."""


def check_identifier(value: str) -> str:
    if not value:
        raise AppcError("ACIdentifier cannot be empty")
    if not re.match(_ID_CHARS, value):
        raise AppcError(
            'ACIdentifier must contain only lower case alphanumeric characters plus "._-~/"'
        )
    if not re.match(_EDGE, value) or not re.match(AC_IDENTIFIER, value):
        raise AppcError(
            "ACIdentifier must start and end with only lower case alphanumeric characters"
        )
    return value


def check_name(value: str) -> str:
    if not value:
        raise AppcError("ACName cannot be empty")
    if not re.match(_NAME_CHARS, value):
        raise AppcError('ACName must contain only lower case alphanumeric characters plus "-"')
    if not re.match(_EDGE, value) or not re.match(AC_NAME, value):
        raise AppcError("ACName must start and end with only lower case alphanumeric characters")
    return value


def sanitize_name(value: str) -> str:
    """appc's SanitizeACName: what rkt uses to derive an app name from an image name."""
    lowered = re.sub(r"[^a-z0-9-]+", "-", value.lower())
    return re.sub(r"-+", "-", lowered).strip("-")


def default_app_name(image_name: str) -> str:
    return sanitize_name(image_name.rsplit("/", 1)[-1])


def check_environment(env: list[dict[str, str]]) -> None:
    seen: set[str] = set()
    for item in env:
        name = item.get("name", "")
        if not name:
            raise AppcError("environment variable name must not be empty")
        if not re.match(ENV_NAME, name):
            raise AppcError(f'environment variable does not have valid identifier "{name}"')
        if name in seen:
            raise AppcError(f'duplicate environment variable of name "{name}"')
        seen.add(name)


def check_labels(labels: list[dict[str, str]]) -> None:
    seen: dict[str, str] = {}
    for label in labels:
        name = label.get("name", "")
        check_identifier(name)
        if name == "name":
            raise AppcError('cannot set "name" label')
        if name in seen:
            raise AppcError(f'duplicate labels of name "{name}"')
        seen[name] = str(label.get("value", ""))
    os_name = seen.get("os")
    if os_name is not None:
        if os_name not in VALID_OS_ARCH:
            raise AppcError(f'bad os "{os_name}"')
        arch = seen.get("arch")
        if arch is not None and arch not in VALID_OS_ARCH[os_name]:
            raise AppcError(f'bad arch "{arch}" for {os_name}')


def _check_annotations(annotations: list[dict[str, str]]) -> None:
    seen: set[str] = set()
    for item in annotations:
        name = item.get("name", "")
        check_identifier(name)
        if name in seen:
            raise AppcError(f'duplicate annotations of name "{name}"')
        seen.add(name)


def check_app(app: dict[str, Any]) -> None:
    """The checks of appc's ``types.App`` unmarshalling."""
    exec_ = app.get("exec") or []
    if not isinstance(exec_, list) or not all(isinstance(a, str) for a in exec_):
        raise AppcError("exec must be a list of strings")
    if exec_ and not exec_[0].startswith("/"):
        raise AppcError("exec[0] must be absolute path")
    if not app.get("user"):
        raise AppcError("user is required")
    if not app.get("group"):
        raise AppcError("group is required")
    workdir = app.get("workingDirectory")
    if workdir and not str(workdir).startswith("/"):
        raise AppcError("workingDirectory must be an absolute path")
    check_environment(list(app.get("environment") or []))
    handlers = [h.get("name") for h in app.get("eventHandlers") or []]
    for name in handlers:
        if name not in ("pre-start", "post-stop"):
            raise AppcError(
                f'bad eventHandler "{name}": eventHandler must be pre-start or post-stop'
            )
        if handlers.count(name) > 1:
            raise AppcError(f"Only one {name} handler allowed")
    for port in app.get("ports") or []:
        check_name(str(port.get("name", "")))
        number = port.get("port")
        count = port.get("count", 1) or 1
        if not isinstance(number, int) or not 1 <= number <= 65535:
            raise AppcError(f"port {number} out of range")
        if number + count > 65536:
            raise AppcError("end of port range must be < 65536")
    for point in app.get("mountPoints") or []:
        check_name(str(point.get("name", "")))
        if not point.get("path"):
            raise AppcError("mountPoint path must be set")
    for isolator in app.get("isolators") or []:
        check_identifier(str(isolator.get("name", "")))


def check_image_manifest(raw: Any) -> dict[str, Any]:
    """Validate an ImageManifest document and return it with rkt's read defaults applied."""
    if not isinstance(raw, dict):
        raise AppcError("manifest is not a JSON object")
    if raw.get("acKind") != "ImageManifest":
        raise AppcError('missing or bad ACKind (must be "ImageManifest")')
    if not raw.get("acVersion"):
        raise AppcError("acVersion must be set")
    check_identifier(str(raw.get("name", "")))
    check_labels(list(raw.get("labels") or []))
    _check_annotations(list(raw.get("annotations") or []))
    app = raw.get("app")
    if app is not None:
        if not isinstance(app, dict):
            raise AppcError("app must be an object")
        check_app(app)
        for port in app.get("ports") or []:
            port.setdefault("count", 1)
            port.setdefault("socketActivated", False)
    return raw


def label_value(manifest: dict[str, Any], name: str) -> str | None:
    for label in manifest.get("labels") or []:
        if label.get("name") == name:
            return str(label.get("value", ""))
    return None


def display_name(manifest: dict[str, Any]) -> str:
    """``name:version`` as ``rkt list`` and ``rkt image list`` show an image."""
    version = label_value(manifest, "version")
    return f"{manifest['name']}:{version}" if version else str(manifest["name"])


def _ordered(
    source: dict[str, Any], keys: tuple[str, ...], always: tuple[str, ...] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        value = source.get(key)
        if key in always or value not in (None, "", [], {}):
            out[key] = value
    return out


def canonical_app(app: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "exec",
        "eventHandlers",
        "user",
        "group",
        "supplementaryGIDs",
        "workingDirectory",
        "environment",
        "mountPoints",
        "ports",
        "isolators",
        "userAnnotations",
        "userLabels",
    )
    out = _ordered(app, keys, always=("exec", "user", "group"))
    if out.get("ports"):
        out["ports"] = [
            _ordered(
                p,
                ("name", "protocol", "port", "count", "socketActivated"),
                always=("count", "socketActivated"),
            )
            for p in out["ports"]
        ]
    if out.get("mountPoints"):
        out["mountPoints"] = [
            _ordered({**m, "readOnly": m.get("readOnly") or None}, ("name", "path", "readOnly"))
            for m in out["mountPoints"]
        ]
    return out
