"""Pod networking as far as rkt's outputs show it: CNI host-local address management.

``--net`` selects networks: ``default`` (ptp, 172.16.28.0/24), ``default-restricted``
(172.31.0.0/16), or a CNI config found by its ``name`` in ``<local-config>/net.d/*.conf``
(its ``ipam.subnet`` is used). ``host`` and ``none`` give the pod no ``net-info.json``.

Addresses come from a host-local store under ``<dir>/networks/<net>/``: one file per leased
address containing the pod UUID, plus ``last_reserved_ip``, all changed under an exclusive
lock on ``<dir>/networks/<net>/lock`` (the layout of CNI's host-local plugin). Leases are
released when the pod is removed (``rm`` / ``gc``). No interface or namespace is created:
the address is bookkeeping that ``status`` reports, not a reachable endpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGIN_PATH = "stage1/rootfs/usr/lib/rkt/plugins/net/{type}"


class NetworkError(Exception):
    pass


@dataclass(frozen=True)
class NetConf:
    name: str
    conf_file: str
    type: str
    subnet: ipaddress.IPv4Network
    raw: dict[str, Any]


BUILTIN = {
    "default": NetConf(
        "default",
        "99-default.conf",
        "ptp",
        ipaddress.IPv4Network("172.16.28.0/24"),
        {
            "name": "default",
            "type": "ptp",
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "subnet": "172.16.28.0/24",
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
    ),
    "default-restricted": NetConf(
        "default-restricted",
        "99-default-restricted.conf",
        "ptp",
        ipaddress.IPv4Network("172.31.0.0/16"),
        {
            "name": "default-restricted",
            "type": "ptp",
            "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": "172.31.0.0/16"},
        },
    ),
}


@dataclass(frozen=True)
class NetRequest:
    name: str
    args: str = ""


def parse_net_flag(values: list[str]) -> list[NetRequest] | str:
    """Return ``"host"``, ``"none"`` or the requested networks, with rkt's checks."""
    requests: list[NetRequest] = []
    for value in values or ["default"]:
        for item in (value or "default").split(","):
            name, _, args = item.partition(":")
            if name in ("host", "all") and args:
                raise NetworkError(f'cannot give arguments to the "{name}" network')
            if any(r.name == name for r in requests):
                raise NetworkError(f'network "{name}" specified multiple times')
            requests.append(NetRequest(name, args))
    names = [r.name for r in requests]
    for special in ("host", "none"):
        if special in names:
            if len(names) > 1:
                raise NetworkError(f'"{special}" network cannot be combined with other networks')
            return special
    return requests


def _user_confs(local_config: Path) -> dict[str, NetConf]:
    confs: dict[str, NetConf] = {}
    directory = local_config / "net.d"
    if not directory.is_dir():
        return confs
    for path in sorted(directory.glob("*.conf")):
        try:
            raw = json.loads(path.read_text())
            subnet = ipaddress.IPv4Network(raw["ipam"]["subnet"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        name = str(raw.get("name", ""))
        if name and name not in confs:
            confs[name] = NetConf(name, path.name, str(raw.get("type", "bridge")), subnet, raw)
    return confs


def lookup(requests: list[NetRequest], local_config: Path) -> list[tuple[NetConf, NetRequest]]:
    confs = {**BUILTIN, **_user_confs(local_config)}
    if any(r.name == "all" for r in requests):
        requests = [NetRequest(n) for n in confs]
    missing = [r.name for r in requests if r.name not in confs]
    if missing:
        raise NetworkError("networks not found: " + ", ".join(missing))
    chosen = [(confs[r.name], r) for r in requests]
    return sorted(chosen, key=lambda pair: pair[0].conf_file)


def _requested_ip(args: str) -> str | None:
    for item in args.split(";"):
        key, _, value = item.partition("=")
        if key.strip().upper() == "IP" and value:
            return value.strip()
    return None


class _Hosts:
    """The addresses host-local hands out in ``subnet``: its hosts but the first (the
    gateway), as a sequence computed on demand (a /16 has 65,533 of them)."""

    def __init__(self, subnet: ipaddress.IPv4Network) -> None:
        listed = subnet.prefixlen >= 31  # /31 and /32: hosts() are all addresses
        self._first = int(subnet.network_address) + (0 if listed else 1) + 1
        last = int(subnet.broadcast_address) - (0 if listed else 1)
        self._count = max(0, last - self._first + 1)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> ipaddress.IPv4Address:
        if not 0 <= index < self._count:
            raise IndexError(index)
        return ipaddress.IPv4Address(self._first + index)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, ipaddress.IPv4Address) and (
            0 <= int(address) - self._first < self._count
        )

    def index(self, address: ipaddress.IPv4Address) -> int:
        if address not in self:
            raise ValueError(address)
        return int(address) - self._first


def allocate(data_dir: Path, conf: NetConf, uuid: str, args: str) -> ipaddress.IPv4Address:
    directory = data_dir / "networks" / conf.name
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        hosts = _Hosts(conf.subnet)
        wanted = _requested_ip(args)
        if wanted is not None:
            address = ipaddress.IPv4Address(wanted)
            if address not in hosts:
                raise NetworkError(
                    f"requested IP address {address} is not in the range of {conf.name}"
                )
            if (directory / str(address)).exists():
                raise NetworkError(
                    f"requested IP address {address} is not available in network: {conf.name}"
                )
            (directory / str(address)).write_text(uuid)
            return address
        last = None
        with contextlib.suppress(OSError, ValueError):
            last = ipaddress.IPv4Address((directory / "last_reserved_ip").read_text().strip())
        start = hosts.index(last) + 1 if last is not None and last in hosts else 0
        for offset in range(len(hosts)):
            candidate = hosts[(start + offset) % len(hosts)]
            path = directory / str(candidate)
            if not path.exists():
                path.write_text(uuid)
                (directory / "last_reserved_ip").write_text(str(candidate))
                return candidate
    raise NetworkError(f"no IP addresses available in network: {conf.name}")


def setup(
    data_dir: Path, local_config: Path, pod_dir: Path, uuid: str, requests: list[NetRequest]
) -> None:
    """Lease an address per network and write ``net-info.json`` and the config copies."""
    entries: list[dict[str, Any]] = []
    (pod_dir / "net").mkdir(exist_ok=True)
    try:
        for index, (conf, request) in enumerate(lookup(requests, local_config)):
            address = allocate(data_dir, conf, uuid, request.args)
            (pod_dir / "net" / conf.conf_file).write_text(json.dumps(conf.raw))
            entries.append(
                {
                    "netName": conf.name,
                    "netConf": f"net/{conf.conf_file}",
                    "pluginPath": PLUGIN_PATH.format(type=conf.type),
                    "ifName": f"eth{index}",
                    "ip": str(address),
                    "args": request.args,
                    "mask": str(conf.subnet.netmask),
                }
            )
    finally:
        if entries:
            (pod_dir / "net-info.json").write_text(json.dumps(entries))


def release(data_dir: Path, uuid: str, net_info: list[dict[str, Any]] | None) -> None:
    for entry in net_info or []:
        directory = data_dir / "networks" / str(entry.get("netName", ""))
        lease = directory / str(entry.get("ip", ""))
        if not directory.is_dir():
            continue
        with open(directory / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(OSError):
                if lease.read_text().strip() == uuid:
                    lease.unlink()
