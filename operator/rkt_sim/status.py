"""The v1 ``Pod`` object that ``status`` and ``list`` print, and the status text format.

Pod times are Unix *seconds*, app times Unix *nanoseconds* (rkt's real mismatch). App state
derives from the pod state; an app whose status file exists is ``exited`` with its code even
in a running pod. ``finished_at`` exists only once gc marked the pod.
"""

from __future__ import annotations

from rkt_sim.gofmt import ZERO_TIME, format_time
from rkt_sim.pods import Pod

TYPE_CHECKING = False  # typing costs rkt-sim start-up time: only the type checker imports it
if TYPE_CHECKING:
    from typing import Any

_APP_STATE = {
    "embryo": "unknown",
    "preparing": "unknown",
    "aborted prepare": "unknown",
    "prepared": "created",
    "running": "running",
}
_HAS_TIMES = (
    "prepared",
    "running",
    "exited",
    "exited garbage",
    "exited deleting",
    "deleting",
    "garbage",
)
_NET_KEYS = ("netName", "netConf", "pluginPath", "ifName", "ip", "args", "mask")


class ConversionError(Exception):
    pass


def _networks(pod: Pod, state: str) -> list[dict[str, Any]] | None:
    if state not in ("running", "exited"):
        return None
    info = pod.net_info()
    if not info:
        return None
    return [{k: entry.get(k, "") for k in _NET_KEYS} for entry in info]


def _mounts(runtime_app: dict[str, Any], volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {v.get("name"): v for v in volumes}
    out: list[dict[str, Any]] = []
    for mount in runtime_app.get("mounts") or []:
        volume = by_name.get(mount.get("volume"), {})
        out.append(
            {
                "name": mount.get("volume", ""),
                "container_path": mount.get("path", ""),
                "host_path": volume.get("source", ""),
                "read_only": bool(volume.get("readOnly", False)),
            }
        )
    return out


def pod_json(pod: Pod, state: str | None = None) -> dict[str, Any]:
    """Build the v1 Pod object; raise :class:`ConversionError` as rkt's conversion does."""
    state = state or pod.state
    created = pod.created_ns() if state in _HAS_TIMES else None
    if created is None:
        raise ConversionError("invalid creation time")
    started = pod.started_ns()
    out: dict[str, Any] = {"name": pod.uuid, "state": state}
    networks = _networks(pod, state)
    if networks:
        out["networks"] = networks
    manifest = pod.manifest() if state not in ("preparing", "aborted prepare", "deleting") else None
    if manifest is not None:
        apps = list(manifest.get("apps") or [])
        volumes = list(manifest.get("volumes") or [])
        codes = pod.app_exit_codes()
        finished = pod.gc_marked_ns()
        if apps:
            out["app_names"] = [a["name"] for a in apps]
            out["apps"] = [
                _app_json(a, state, codes, volumes, created, started, finished) for a in apps
            ]
        if manifest.get("userAnnotations"):
            out["user_annotations"] = manifest["userAnnotations"]
        if manifest.get("userLabels"):
            out["user_labels"] = manifest["userLabels"]
    out["created_at"] = created // 1_000_000_000
    if started:
        out["started_at"] = started // 1_000_000_000
    # Keep Go's field order: user_* come after the times in the struct.
    for key in ("user_annotations", "user_labels"):
        if key in out:
            out[key] = out.pop(key)
    return out


def _app_json(
    runtime_app: dict[str, Any],
    state: str,
    codes: dict[str, int],
    volumes: list[dict[str, Any]],
    created: int,
    started: int | None,
    finished: int | None,
) -> dict[str, Any]:
    name = runtime_app["name"]
    app_state = _APP_STATE.get(state, "exited")
    code = codes.get(name)
    if code is not None:
        app_state = "exited"
    out: dict[str, Any] = {"name": name, "state": app_state, "created_at": created}
    if started:
        out["started_at"] = started
    if finished:
        out["finished_at"] = finished
    if code is not None:  # a pointer in rkt's struct: 0 is printed when the app recorded it
        out["exit_code"] = code
    out["image_id"] = (runtime_app.get("image") or {}).get("id", "")
    mounts = _mounts(runtime_app, volumes)
    if mounts:
        out["mounts"] = mounts
    app = runtime_app.get("app") or {}
    if app.get("userAnnotations"):
        out["user_annotations"] = app["userAnnotations"]
    if app.get("userLabels"):
        out["user_labels"] = app["userLabels"]
    return out


def status_text(pod: Pod, state: str) -> list[str]:
    """The ``key=value`` lines of ``rkt status`` in rkt's order."""
    created = pod.created_ns() if state in _HAS_TIMES else None
    lines = [f"state={state}", f"created={format_time(created) if created else ZERO_TIME}"]
    started = pod.started_ns()
    if started:
        lines.append(f"started={format_time(started)}")
    if state in ("running", "exited"):
        nets = pod.net_info() or []
        lines.append("networks=" + ", ".join(f"{n.get('netName')}:ip4={n.get('ip')}" for n in nets))
    if state in ("running", "deleting", "exited deleting", "exited", "exited garbage"):
        pid = pod.pid()
        if pid is not None:
            lines.append(f"pid={pid}")
            lines.append(f"exited={'true' if state in ('exited', 'exited garbage') else 'false'}")
    if state != "running":
        for app, code in sorted(pod.app_exit_codes().items()):
            lines.append(f"app-{app}={code}")
    return lines
