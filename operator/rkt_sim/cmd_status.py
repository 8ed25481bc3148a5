"""``rkt status``, ``rkt list`` and ``rkt cat-manifest``: read-only views of pods."""

from __future__ import annotations

import contextlib
import json
import time

from rkt_sim import gofmt, pods, tables
from rkt_sim.appc import display_name
from rkt_sim.context import Context
from rkt_sim.errors import FlagError, SimError
from rkt_sim.flags import GLOBAL_FLAGS, FlagSet, Parsed, bool_flag, str_flag
from rkt_sim.status import ConversionError, pod_json, status_text

STATUS_USAGE = (
    "Usage:\n  rkt status [--wait=bool|timeout] [--wait-ready=bool|timeout] "
    "--uuid-file=FILE | UUID\n"
)
LIST_USAGE = "Usage:\n  rkt list [--full] [--no-legend] [--format=json|json-pretty]\n"
CAT_USAGE = "Usage:\n  rkt cat-manifest [--pretty-print] UUID\n"

STATUS_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        str_flag(
            "format", "choose the output format, allowed format includes 'json', 'json-pretty'"
        ),
        str_flag("wait", "toggle waiting for the pod to finish", no_opt="true"),
        str_flag("wait-ready", "toggle waiting until the pod is ready", no_opt="true"),
        str_flag("uuid-file", "read pod UUID from file instead of argument"),
    )
)
LIST_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        bool_flag("full", "use long output format"),
        bool_flag("no-legend", "suppress a legend with the list"),
        str_flag(
            "format", "choose the output format, allowed format includes 'json', 'json-pretty'"
        ),
    )
)
CAT_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        bool_flag("pretty-print", "apply indent to format the output"),
        str_flag("uuid-file", "read pod UUID from file instead of argument"),
    )
)
_FINISHED = ("exited", "aborted prepare", "garbage", "exited garbage")
POLL_SECONDS = 0.1


def _format(parsed: Parsed) -> str:
    value = parsed.last("format", "") or ""
    if value not in ("", "json", "json-pretty"):
        raise FlagError(
            f'invalid argument "{value}" for "--format" flag: Invalid format option: {value}'
        )
    return value


def _wait_value(flag: str, value: str | None) -> float | None:
    """``None``: no wait; ``inf``: forever; else seconds."""
    if value is None or value in ("false", "0", "f", "F", "FALSE", "False"):
        return None
    if value in ("", "true", "t", "T", "TRUE", "True", "1"):
        return float("inf")
    try:
        ns = gofmt.parse_duration(value)
    except ValueError as exc:
        raise FlagError(f'invalid argument "{value}" for "--{flag}" flag: {exc}') from None
    if ns == 0:
        return None
    return float("inf") if ns < 0 else ns / 1e9


def pod_argument(parsed: Parsed, *, allow_many: bool = False) -> list[str]:
    """The UUID positional(s) or ``--uuid-file``, with rkt's usage and exit-1 rules."""
    uuid_file = parsed.last("uuid-file")
    if uuid_file:
        if parsed.positionals:
            raise SimError(usage=True)
        return [pods.read_uuid_file(uuid_file)]
    if not parsed.positionals or (len(parsed.positionals) > 1 and not allow_many):
        raise SimError(usage=True)
    return list(parsed.positionals)


def _wait(ctx: Context, pod: pods.Pod, seconds: float, done: str) -> pods.Pod:
    deadline = time.monotonic() + seconds
    while True:
        current = pods.locate(ctx.data_dir, pod.uuid) or pod
        if done == "ready" and current.supervisor_ready():
            return current
        if done == "finished" and (current.state in _FINISHED or not current.path.exists()):
            return current
        if time.monotonic() >= deadline:
            what = "readiness" if done == "ready" else "to finish"
            raise SimError(f"error waiting for pod {what}: context deadline exceeded")
        time.sleep(POLL_SECONDS)


def run_status(ctx: Context, parsed: Parsed) -> int:
    fmt = _format(parsed)
    wait = _wait_value("wait", parsed.last("wait"))
    wait_ready = _wait_value("wait-ready", parsed.last("wait-ready"))
    (arg,) = pod_argument(parsed)
    try:
        pod = pods.resolve(ctx.data_dir, arg)
    except SimError as exc:
        raise SimError(f"problem retrieving pod: {exc.message}") from None
    if wait_ready is not None:
        pod = _wait(ctx, pod, wait_ready, "ready")
    if wait is not None:
        pod = _wait(ctx, pod, wait, "finished")
    state = pod.state
    if not fmt:
        for line in status_text(pod, state):
            ctx.out(line)
        return 0
    try:
        obj = pod_json(pod, state)
    except ConversionError as exc:
        raise SimError(f"unable to print status: error converting pod: {exc}") from None
    ctx.out(gofmt.dumps(obj) if fmt == "json" else gofmt.dumps_indent(obj))
    return 0


def run_list(ctx: Context, parsed: Parsed) -> int:
    fmt = _format(parsed)
    found = pods.walk(ctx.data_dir)
    if fmt:
        objects = []
        errors = []
        for pod in found:
            try:
                objects.append(pod_json(pod))
            except ConversionError as exc:
                errors.append(str(exc))  # rkt prints the conversion error alone
        value = objects or None
        ctx.out(gofmt.dumps(value) if fmt == "json" else gofmt.dumps_indent(value))
        _error_block(ctx, errors)
        return 0
    full = parsed.boolean("full")
    rows: list[list[str]] = []
    if not parsed.boolean("no-legend"):
        header = ["UUID", "APP", "IMAGE NAME", "STATE", "CREATED", "STARTED", "NETWORKS"]
        if full:
            header.insert(3, "IMAGE ID")
        rows.append(header)
    for pod in found:
        rows.extend(_list_rows(ctx, pod, full))
    for line in tables.tabwrite(rows):
        ctx.out(line)
    return 0


def _error_block(ctx: Context, errors: list[str]) -> None:
    if not errors:
        return
    ctx.err(f"{len(errors)} error(s) encountered when listing pods:")
    ctx.err("----------------------------------------")
    for error in errors:
        ctx.err(error)
        ctx.err("----------------------------------------")
    ctx.err("misc:")
    ctx.err(f"  rkt's appc version: {ctx.sim.appc_version}")
    ctx.err("")


def _when(ns: int | None, full: bool) -> str:
    if not ns:
        return ""
    return gofmt.format_time(ns) if full else tables.humanize_ago(ns)


def _list_rows(ctx: Context, pod: pods.Pod, full: bool) -> list[list[str]]:
    state = pod.state
    uuid = pod.uuid if full else pod.uuid[:8]
    if state == "aborted prepare":
        # No creation time was ever written: rkt renders Go's zero time.
        created = gofmt.ZERO_TIME if full else "a long while ago"
    else:
        created = _when(pod.created_ns() if state != "preparing" else None, full)
    started = _when(pod.started_ns(), full)
    nets = pod.net_info() if state in ("running", "exited") else None
    networks = ", ".join(f"{n.get('netName')}:ip4={n.get('ip')}" for n in nets or [])
    manifest = pod.manifest() if state not in ("preparing", "aborted prepare", "deleting") else None
    apps = (manifest or {}).get("apps") or []
    if not apps:
        row = [uuid, "-", "-", state, created, started, networks]
        if full:
            row.insert(3, "-")
        return [row]
    rows = []
    for index, app in enumerate(apps):
        image = app.get("image") or {}
        info = pod.path / "appsinfo" / app["name"] / "manifest"
        name = str(image.get("name", ""))
        with contextlib.suppress(OSError, ValueError, KeyError):
            name = display_name(json.loads(info.read_text()))
        first = index == 0
        row = [
            uuid if first else "",
            str(app["name"]),
            name,
            state if first else "",
            created if first else "",
            started if first else "",
            networks if first else "",
        ]
        if full:
            row.insert(3, str(image.get("id", ""))[:19])
        rows.append(row)
    return rows


def run_cat_manifest(ctx: Context, parsed: Parsed) -> int:
    (arg,) = pod_argument(parsed)
    pretty = parsed.boolean("pretty-print") if parsed.given("pretty-print") else True
    try:
        pod = pods.resolve(ctx.data_dir, arg)
    except SimError as exc:
        raise SimError(f"problem retrieving pod: {exc.message}") from None
    manifest = pod.manifest()
    if manifest is None:
        raise SimError("")  # rkt exits 254 without a message here
    from rkt_sim.manifest import canonical_pod  # only cat-manifest needs it

    obj = canonical_pod(manifest)
    ctx.out(gofmt.dumps_indent(obj) if pretty else gofmt.dumps(obj))
    return 0
