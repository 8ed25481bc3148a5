"""Pure parsers of rkt's (untrusted) output, and the one classifier of rkt failures.

Everything here works on strings already captured by ``rkt_operator.rkt.cli``: no process,
no file system, no clock. Formats follow the rkt v1.30.0 contract (``rkt-cli.md``): pod
times in JSON are Unix seconds, app times Unix nanoseconds; multi-word states contain a
space; ``rkt list --format=json`` prints the literal ``null`` when there are no pods.

Output is size-limited and validated field by field; anything unexpected raises
``RktOutputError`` (retryable) rather than producing a half-parsed value. Callers must
never hand stdout of a failed command to these parsers: rkt prints usage text there.

Size: every rkt output format the agent reads, in one module, each parser tested on
captured output; splitting by command would scatter the shared field rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from packaging.version import InvalidVersion, Version

from rkt_operator import errors
from rkt_operator.rkt.pods import (
    APP_STATES,
    POD_STATES,
    UUID_RE,
    AppStatus,
    NetworkInfo,
    PodStatus,
    PodStatusText,
    RktVersion,
)

# rkt prints a few hundred bytes per pod; 8 MiB is thousands of pods. Beyond that the
# output is not something rkt produced.
MAX_OUTPUT_CHARS = 8 * 1024 * 1024
# Longest excerpt of untrusted text quoted in an error message.
_QUOTE_CHARS = 200

# --------------------------------------------------------------------------- helpers


def _bad(what: str, text: str = "") -> errors.RktOutputError:
    excerpt = text[:_QUOTE_CHARS] + ("..." if len(text) > _QUOTE_CHARS else "")
    message = f"{what}: {excerpt!r}" if text else what
    return errors.RktOutputError(message, stdout=text[: 4 * _QUOTE_CHARS])


def _check_size(stdout: str) -> None:
    if len(stdout) > MAX_OUTPUT_CHARS:
        raise errors.RktOutputError(f"rkt output too large ({len(stdout)} characters)")


def _load_json(stdout: str) -> Any:
    _check_size(stdout)
    try:
        return json.loads(stdout)
    except (ValueError, RecursionError):
        raise _bad("rkt printed invalid JSON", stdout) from None


def _str(obj: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise _bad(f"missing {key!r} in rkt output", json.dumps(obj)[:_QUOTE_CHARS])
        return ""
    if not isinstance(value, str):
        raise _bad(f"{key!r} is not a string in rkt output", repr(value))
    return value


def _int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{key!r} is not an integer in rkt output", repr(value))
    return value


def _str_map(obj: Mapping[str, Any], key: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _bad(f"{key!r} is not a string map in rkt output", repr(value))
    return dict(value)


def _epoch(value: int | None, *, nanoseconds: bool) -> datetime | None:
    """Unix seconds (pod) or nanoseconds (app) to an aware UTC datetime; 0/None is unset."""
    if value is None or value == 0:
        return None
    seconds, rest = divmod(value, 1_000_000_000) if nanoseconds else (value, 0)
    try:
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest // 1000)
    except (OverflowError, OSError, ValueError):
        raise _bad("time out of range in rkt output", str(value)) from None


def _state(value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise _bad("unknown state in rkt output", value)
    return value


# --------------------------------------------------------------------------- version


_LEGACY_VERSION_RE = re.compile(r"^(rkt|appc) [vV]ersion:? (\S+)")


def _version(value: str, raw: str) -> Version:
    try:
        return Version(value.split("+", 1)[0].strip())
    except InvalidVersion:
        raise _bad("Unable to parse Rkt version string", raw) from None


def parse_version(stdout: str) -> RktVersion:
    """``rkt version``: ``Key: value`` lines (rkt >= 1.0), or the 0.x ``rkt version 0.8.1``."""
    _check_size(stdout)
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        line = line.strip()
        legacy = _LEGACY_VERSION_RE.match(line)
        if ": " in line:
            key, _, value = line.partition(": ")
            key = key.strip().lower()
            if key in ("rkt version", "appc version"):
                found.setdefault(key.split()[0], value.strip())
        elif legacy:
            found.setdefault(legacy.group(1), legacy.group(2))
    if "rkt" not in found or "appc" not in found:
        raise _bad("Unable to parse Rkt version string", stdout)
    return RktVersion(
        rkt=_version(found["rkt"], stdout), appc=_version(found["appc"], stdout), raw=stdout
    )


# --------------------------------------------------------------------------- prepare


def parse_uuid(stdout: str) -> str:
    """``rkt prepare``: the last non-empty stdout line must be a canonical pod UUID."""
    _check_size(stdout)
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines or not UUID_RE.match(lines[-1]):
        raise _bad("rkt prepare printed no pod UUID", stdout)
    return lines[-1]


# --------------------------------------------------------------------------- status JSON


def _network(obj: Any) -> NetworkInfo:
    if not isinstance(obj, dict):
        raise _bad("network entry is not an object", repr(obj))
    return NetworkInfo(
        name=_str(obj, "netName"),
        if_name=_str(obj, "ifName"),
        ip=_str(obj, "ip"),
        mask=_str(obj, "mask"),
        args=_str(obj, "args"),
    )


def _app(obj: Any) -> AppStatus:
    if not isinstance(obj, dict):
        raise _bad("app entry is not an object", repr(obj))
    return AppStatus(
        name=_str(obj, "name", required=True),
        state=_state(_str(obj, "state", required=True), APP_STATES),
        image_id=_str(obj, "image_id"),
        created_at=_epoch(_int(obj, "created_at"), nanoseconds=True),
        started_at=_epoch(_int(obj, "started_at"), nanoseconds=True),
        finished_at=_epoch(_int(obj, "finished_at"), nanoseconds=True),
        exit_code=_int(obj, "exit_code"),
        user_annotations=_str_map(obj, "user_annotations"),
        user_labels=_str_map(obj, "user_labels"),
    )


def _list_of(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{key!r} is not a list in rkt output", repr(value))
    return value


def _pod(obj: Any) -> PodStatus:
    if not isinstance(obj, dict):
        raise _bad("pod status is not a JSON object", repr(obj))
    uuid = _str(obj, "name", required=True)
    if not UUID_RE.match(uuid):
        raise _bad("pod name is not a UUID", uuid)
    return PodStatus(
        uuid=uuid,
        state=_state(_str(obj, "state", required=True), POD_STATES),
        networks=tuple(_network(n) for n in _list_of(obj, "networks")),
        apps=tuple(_app(a) for a in _list_of(obj, "apps")),
        created_at=_epoch(_int(obj, "created_at"), nanoseconds=False),
        started_at=_epoch(_int(obj, "started_at"), nanoseconds=False),
        user_annotations=_str_map(obj, "user_annotations"),
        user_labels=_str_map(obj, "user_labels"),
    )


def parse_status_json(stdout: str) -> PodStatus:
    """``rkt status --format=json`` (or ``json-pretty``): one pod."""
    return _pod(_load_json(stdout))


def parse_aborted_prepares(stdout: str) -> list[str]:
    """UUIDs of ``aborted prepare`` pods in ``rkt list --full --no-legend`` (text).

    ``rkt list --format=json`` leaves such pods out (they have no creation time), so the
    text listing is the only place rkt names them. Untrusted: a line counts only when its
    first field is a full UUID and one of its fields is exactly ``aborted prepare``.
    """
    found: list[str] = []
    for line in stdout.splitlines():
        fields = [f.strip() for f in line.split("\t") if f.strip()]
        if fields and UUID_RE.match(fields[0]) and "aborted prepare" in fields[1:]:
            found.append(fields[0])
    return found


def parse_list_json(stdout: str) -> list[PodStatus]:
    """``rkt list --format=json``: an array of pods, or ``null`` when there are none."""
    data = _load_json(stdout)
    if data is None:
        return []
    if not isinstance(data, list):
        raise _bad("rkt list did not print a JSON array", stdout)
    return [_pod(item) for item in data]


# --------------------------------------------------------------------------- status text

# Go layout "2006-01-02 15:04:05.999 -0700 MST": fraction optional, zone name ignored.
_TEXT_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r" ([+-])(\d{2})(\d{2})(?: \S+)?$"
)


def parse_text_time(value: str) -> datetime | None:
    """A time as rkt's text formats print it; Go's zero time (year 1) means unset."""
    match = _TEXT_TIME_RE.match(value.strip())
    if not match:
        raise _bad("unparseable time in rkt output", value)
    year, month, day, hour, minute, second, frac, sign, oh, om = match.groups()
    if int(year) <= 1:
        return None
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((frac or "0").ljust(6, "0")[:6]),
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise _bad("invalid time in rkt output", value) from None
    return local.astimezone(UTC)


def _text_networks(value: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, ip = entry.partition(":ip4=")
        if not sep:
            raise _bad("unparseable networks in rkt status", value)
        out.append((name, ip))
    return tuple(out)


def parse_status_text(stdout: str) -> PodStatusText:
    """``rkt status`` without ``--format``: ``key=value`` lines (app lines in any order)."""
    _check_size(stdout)
    values: dict[str, str] = {}
    apps: dict[str, int] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise _bad("unparseable line in rkt status", line)
        if key.startswith("app-"):
            if not re.fullmatch(r"-?\d{1,10}", value):
                raise _bad("app exit code is not a number", line)
            apps[key[4:]] = int(value)
        else:
            values[key] = value
    if "state" not in values:
        raise _bad("rkt status printed no state", stdout)
    pid = values.get("pid")
    if pid is not None and not re.fullmatch(r"\d{1,10}", pid):
        raise _bad("pid is not a number", pid)
    exited = values.get("exited")
    return PodStatusText(
        state=_state(values["state"], POD_STATES),
        created_at=parse_text_time(values["created"]) if "created" in values else None,
        started_at=parse_text_time(values["started"]) if "started" in values else None,
        networks=_text_networks(values.get("networks", "")),
        pid=int(pid) if pid is not None else None,
        exited=None if exited is None else exited == "true",
        app_exit_codes=apps,
    )


# --------------------------------------------------------------------------- manifest


def parse_manifest(stdout: str) -> dict[str, Any]:
    """``rkt cat-manifest``: a PodManifest JSON object."""
    data = _load_json(stdout)
    if not isinstance(data, dict) or data.get("acKind") != "PodManifest":
        raise _bad("rkt cat-manifest did not print a PodManifest", stdout)
    apps = data.get("apps")
    if apps is not None and not isinstance(apps, list):
        raise _bad("manifest apps is not a list", repr(apps))
    return data


def port_map_from_manifest(manifest: Mapping[str, Any], names: Sequence[str]) -> dict[str, int]:
    """Image port name -> container port, for the requested names the app declares.

    Nomad's rules: the manifest must hold exactly one app, with an ``app`` object; names the
    app does not declare are left out.
    """
    apps = manifest.get("apps") or []
    if not apps:
        raise errors.RktOutputError("manifest has no apps")
    if len(apps) > 1:
        raise errors.RktOutputError("manifest has multiple apps!")
    app = apps[0].get("app") if isinstance(apps[0], dict) else None
    if not isinstance(app, dict):
        raise errors.RktOutputError("specified app has no App object")
    declared: dict[str, int] = {}
    for port in app.get("ports") or []:
        if not isinstance(port, dict):
            continue
        name, number = port.get("name"), port.get("port")
        if isinstance(name, str) and isinstance(number, int) and not isinstance(number, bool):
            declared.setdefault(name, number)
    return {name: declared[name] for name in names if name in declared}


# --------------------------------------------------------------------------- failures


# Commands that address a pod by UUID (prefix), whose stderr can say "not found" etc.
UUID_COMMANDS = frozenset({"status", "run-prepared", "stop", "rm", "enter", "cat-manifest"})
_WRONG_STATE_RE = re.compile(
    r"is not prepared|is not running|is currently running|is currently being prepared|"
    r"is currently being deleted|isn't currently running"
)


def subcommand(argv: Sequence[str]) -> str:
    """The rkt subcommand in ``argv`` (the first word after the binary that is not a flag)."""
    for word in argv[1:]:
        if not word.startswith("-"):
            return word
    return ""


def _summary(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    # "<cmd>: failed to stop N pod(s)" style trailers say less than the line before them.
    for line in reversed(lines):
        if "failed to stop" not in line and "failed to remove one or more" not in line:
            return line[:_QUOTE_CHARS]
    return lines[-1][:_QUOTE_CHARS] if lines else ""


def classify(argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> errors.RktError:
    """Map a failed rkt command to the most specific ``RktError`` subclass.

    The only place that interprets rkt's stderr. The returned error carries ``argv`` as given
    (callers redact it first), the exit code and both outputs (cut to a sane size).
    """
    sub = subcommand(argv)
    detail = _summary(stderr) or f"exit status {returncode}"
    message = f"rkt {sub or '(no command)'} failed: {detail}"
    kwargs: dict[str, Any] = {
        "argv": argv,
        "returncode": returncode,
        "stdout": stdout[-4096:],
        "stderr": stderr[-4096:],
    }
    cls: type[errors.RktError] = errors.RktError
    if "cannot run as unprivileged user" in stderr:
        cls = errors.RktUnavailable
    elif sub in UUID_COMMANDS and "no matches found for" in stderr:
        cls = errors.PodNotFound
    elif sub in UUID_COMMANDS and re.search(r"ambiguous uuid, \d+ matches", stderr):
        cls = errors.AmbiguousUUID
    elif sub == "stop" and "error reading pid" in stderr:
        cls = errors.PodStarting
    elif sub in UUID_COMMANDS and _WRONG_STATE_RE.search(stderr):
        cls = errors.PodWrongState
    elif sub == "prepare":
        cls = errors.PrepareError
    elif sub == "trust":
        cls = errors.TrustError
        message = trust_message(argv, returncode, stdout, stderr)
    return cls(message, **kwargs)


def _excerpt(text: str, limit: int) -> str:
    """The end of untrusted ``text`` on one line (rkt's last words say the most)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def trust_message(argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> str:
    """Nomad's E7 (``Error running rkt trust: <exit error>, Output: ..., Error: ...``) with
    the command too, from the subcommand on (``argv`` is redacted by the caller)."""
    words = list(argv)
    command = ["rkt", *words[words.index("trust") :]] if "trust" in words else words
    return (
        f"Error running rkt trust: exit status {returncode}"
        f"; command: {' '.join(command)}"
        f"; output: {_excerpt(stdout, 2 * _QUOTE_CHARS) or '(none)'}"
        f"; error: {_excerpt(stderr, 2 * _QUOTE_CHARS) or '(none)'}"
    )
