"""User CNI networks for rkt, written where stage1 reads them and removed afterwards.

rkt's ``run-prepared`` reads user networks from the host's ``/etc/rkt/net.d`` whatever
``--local-config`` says (real rkt and rkt-sim alike), so tests and benchmarks that need a
network of their own (a link-local one, a /16 for a thousand pods) write one file there
for their run and take it, the directories they made and any bridge it left, away again.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

HOST_NET_D = Path("/etc/rkt/net.d")


class UserNetworks:
    """The networks one run wrote; ``remove()`` undoes every write (pods on them go first:
    their teardown reads the network's file)."""

    def __init__(self, net_d: Path = HOST_NET_D) -> None:
        self.net_d = net_d
        self._written: list[tuple[Path, str | None]] = []
        self._created: list[Path] = []

    def write(self, name: str, conf: Mapping[str, Any]) -> Path:
        for d in (self.net_d.parent, self.net_d):
            if not d.exists():
                d.mkdir()
                self._created.append(d)
        target = self.net_d / f"90-{name}.conf"
        target.write_text(json.dumps({"name": name, **conf}))
        bridge = conf.get("bridge")
        self._written.append((target, bridge if isinstance(bridge, str) else None))
        return target

    def remove(self) -> None:
        written, self._written = self._written, []
        for target, bridge in written:
            target.unlink(missing_ok=True)
            if bridge:  # rkt's teardown leaves a bridge network's bridge behind
                subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        created, self._created = self._created, []
        for d in reversed(created):
            with contextlib.suppress(OSError):  # someone else's file is in it now
                d.rmdir()


@contextlib.contextmanager
def user_network(name: str, conf: Mapping[str, Any], net_d: Path = HOST_NET_D) -> Iterator[str]:
    """One network named ``name`` for the ``with`` block."""
    networks = UserNetworks(net_d)
    networks.write(name, conf)
    try:
        yield name
    finally:
        networks.remove()
