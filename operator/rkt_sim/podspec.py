"""Parsers for prepare's value flags (``--volume``, ``--port``, ``--mount``, environment,
isolators), each raising the message rkt's flag ``Set`` methods produce.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from rkt_sim import quantity
from rkt_sim.appc import AppcError, check_name


class SpecError(ValueError):
    """A flag value is malformed; the message is rkt's."""


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _go_bool(value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SpecError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _go_int(value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise SpecError(f'strconv.Atoi: parsing "{value}": invalid syntax') from None


def _query(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` the way appc's ``MakeQueryString`` + ``url.ParseQuery`` read it."""
    seen: dict[str, list[str]] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        seen.setdefault(key, []).append(value)
    out: dict[str, str] = {}
    for key, values in seen.items():
        if len(values) > 1:
            quoted = "[" + " ".join(f'"{v}"' for v in values) + "]"
            raise SpecError(f"label {key} with multiple values {quoted}")
        out[key] = values[0]
    return out


def parse_volume(text: str) -> dict[str, Any]:
    """``NAME,kind=host,source=/p[,readOnly=B][,recursive=B]`` or ``NAME,kind=empty[...]``."""
    try:
        return _parse_volume(text)
    except (SpecError, AppcError) as exc:
        raise SpecError(f'invalid value in --volume flag "{text}": {exc}') from None


def _parse_volume(text: str) -> dict[str, Any]:
    params = _query("name=" + text)
    volume: dict[str, Any] = {}
    for key, value in params.items():
        if key == "name":
            volume["name"] = check_name(value)
        elif key == "kind":
            volume["kind"] = value
        elif key == "source":
            volume["source"] = value
        elif key in ("readOnly", "recursive"):
            volume[key] = _go_bool(value)
        elif key == "mode":
            volume["mode"] = value
        elif key in ("uid", "gid"):
            volume[key] = _go_int(value)
        else:
            raise SpecError(f'unknown volume parameter "{key}"')
    kind = volume.get("kind")
    if kind == "empty":
        volume.setdefault("mode", "0755")
        volume.setdefault("uid", 0)
        volume.setdefault("gid", 0)
    check_volume(volume)
    return canonical_volume(volume)


def check_volume(volume: dict[str, Any]) -> None:
    if not volume.get("name"):
        raise SpecError("name must be set")
    kind = volume.get("kind")
    if kind == "empty":
        if volume.get("source"):
            raise SpecError("source for empty volume must be empty")
        return
    if kind == "host":
        if not volume.get("source"):
            raise SpecError("source for host volume cannot be empty")
        for key in ("mode", "uid", "gid"):
            if key in volume:
                raise SpecError(f"{key} for host volume cannot be set")
        if not str(volume["source"]).startswith("/"):
            raise SpecError("source for host volume must be absolute path")
        return
    raise SpecError('unrecognized volume kind: should be one of "empty", "host"')


def canonical_volume(volume: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "kind", "source", "readOnly", "recursive", "mode", "uid", "gid")
    return {k: volume[k] for k in keys if k in volume and volume[k] != ""}


def parse_port(text: str) -> dict[str, Any]:
    """``NAME:HOSTPORT`` or ``NAME:HOSTIP:HOSTPORT`` into an ExposedPort."""
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise SpecError(f'"{text}" is not in name:[ip:]port format')
    try:
        name = check_name(parts[0])
    except AppcError as exc:
        raise SpecError(f'"{parts[0]}" is not a valid port name: {exc}') from None
    host_ip = parts[1] if len(parts) == 3 else None
    port_text = parts[-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SpecError(f'"{port_text}" is not a valid port number')
    port: dict[str, Any] = {"name": name, "hostPort": int(port_text)}
    if host_ip is not None:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise SpecError(f'"{host_ip}" is not a valid IP address') from None
        port["hostIP"] = host_ip
    return port


def parse_mount(text: str) -> dict[str, str]:
    """``volume=VOL,target=/path``."""
    mount: dict[str, str] = {}
    for key, value in _query(text).items():
        if key == "volume":
            try:
                mount["volume"] = check_name(value)
            except AppcError as exc:
                raise SpecError(
                    f'invalid volume name "{value}" in --mount flag "{text}": {exc}'
                ) from None
        elif key == "target":
            mount["path"] = value
        else:
            raise SpecError(f'unknown mount parameter "{key}"')
    return {"volume": mount.get("volume", ""), "path": mount.get("path", "")}


def parse_env_pair(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq:
        raise SpecError("environment variable must be specified as name=value")
    return name, value


def read_env_file(path: str) -> list[tuple[str, str]]:
    """``--set-env-file``: NAME=VALUE lines; blank lines and ``#``/``;`` comments skipped."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, eq, value = line.partition("=")
        if not eq:
            raise SpecError(f'invalid environment line {number} in "{path}": {raw!r}')
        if name in seen:
            raise SpecError(f'environment variable "{name}" already set')
        seen.add(name)
        pairs.append((name, value))
    return pairs


def parse_key_value(flag: str, text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise SpecError(f"{flag} must be in key=value format")
    return key, value


def memory_isolator(text: str) -> dict[str, Any]:
    try:
        value = quantity.canonical(text)
        size = quantity.value_int(text)
    except quantity.QuantityError as exc:
        raise SpecError(str(exc)) from None
    if size < 4096:
        raise SpecError(
            f"memory limit of {size} bytes too low. Try a reasonable value, such as --memory=16M"
        )
    return {
        "name": "resource/memory",
        "value": {"default": False, "request": value, "limit": value},
    }


def cpu_isolator(text: str) -> dict[str, Any]:
    try:
        value = quantity.canonical(text)
    except quantity.QuantityError as exc:
        raise SpecError(str(exc)) from None
    return {"name": "resource/cpu", "value": {"default": False, "request": value, "limit": value}}


def int_isolator(name: str, text: str) -> dict[str, Any]:
    try:
        return {"name": name, "value": int(text)}
    except ValueError:
        raise SpecError(f'strconv.Atoi: parsing "{text}": invalid syntax') from None


def caps_isolator(name: str, text: str) -> dict[str, Any]:
    caps = [c.strip() for c in text.split(",") if c.strip()]
    for cap in caps:
        if not cap.startswith("CAP_"):
            raise SpecError(f'unknown capability "{cap}"')
    return {"name": name, "value": {"set": caps}}
