"""What the real-node tier's fixtures hand to its tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeInputs:
    nodebin: Path
    pause_image: str
    pause_archive: Path
    agent_image: str
    agent_archive: Path
    rkt_dir: Path
