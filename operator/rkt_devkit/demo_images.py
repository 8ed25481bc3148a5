"""What the examples in ``examples/`` need on a node, made locally for the demo.

Owns two things: the example images, built as unsigned ACIs around the host's static busybox
(``example.com/kv-server:1.0``, whose app serves HTTP with ``httpd -f -p 2379`` on a port
named ``client``; ``example.com/busybox:1.35``, a plain shell for the run-once examples), and
the host directories the examples' ``hostPath`` volumes name (created when missing, with a
``motd`` file in read-only ones as the input the host-volume example copies; the ones the
demo created are recorded so that the teardown removes exactly those).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from rkt_devkit.aci import build_aci

KV_SERVER = ("example.com/kv-server", "1.0")
BUSYBOX = ("example.com/busybox", "1.35")
KV_PORT = {"name": "client", "protocol": "tcp", "port": 2379}
_CREATED = "host-dirs.json"


class ImageError(RuntimeError):
    """An example image could not be built."""


def build(directory: Path) -> list[Path]:
    """Build the example images into ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        kv = build_aci(
            directory / "kv-server.aci",
            name=KV_SERVER[0],
            version=KV_SERVER[1],
            exec=["/bin/httpd", "-f", "-p", str(KV_PORT["port"])],
            ports=[KV_PORT],
        )
        shell = build_aci(
            directory / "busybox.aci", name=BUSYBOX[0], version=BUSYBOX[1], exec=["/bin/sh"]
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ImageError(f"building the example images: {exc}") from exc
    return [kv, shell]


def _volumes(examples: Path) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = []
    for path in sorted(examples.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "RktTask":
                volumes.extend(v for v in doc["spec"].get("volumes", []) if "hostPath" in v)
    return volumes


def host_volume_dirs(examples: Path, record: Path) -> list[Path]:
    """Create the host directories the examples mount; the ones that were missing are
    remembered in ``record``'s folder for :func:`host_volume_dirs_created`."""
    made: list[str] = []
    paths: list[Path] = []
    for volume in _volumes(examples):
        path = Path(volume["hostPath"])
        missing = [p for p in (path, *path.parents) if not p.exists()]
        if missing:
            made.append(str(missing[-1]))  # the top-most folder the demo creates
        path.mkdir(parents=True, exist_ok=True)
        if volume.get("readOnly"):
            motd = path / "motd"
            if not motd.exists():
                motd.write_text("Hello from the rkt-operator demo: a read-only host volume.\n")
        paths.append(path)
    (record / _CREATED).write_text(json.dumps(sorted(set(made))) + "\n")
    return paths


def host_volume_dirs_created(record: Path) -> list[Path]:
    """The host directories :func:`host_volume_dirs` created (for the teardown)."""
    try:
        return [Path(p) for p in json.loads((record / _CREATED).read_text())]
    except (OSError, ValueError):
        return []
