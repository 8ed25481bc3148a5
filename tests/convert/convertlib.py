"""Running ``rkt-operator convert`` in-process for the tests, and the corpus of Nomad jobs
written for them (``corpus/``) with the expected outputs (``golden/``)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rkt_operator.convert import command

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
GOLDEN = HERE / "golden"
# The demo's nodes: the corpus is converted for them.
NODES = ("node-a", "node-b")
UPDATE = os.environ.get("RKT_OPERATOR_UPDATE_GOLDEN") == "1"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.stdout) if d]

    def golden_text(self) -> str:
        return f"exit: {self.code}\n--- stderr\n{self.stderr}--- stdout\n{self.stdout}"


def convert(*argv: str, stdin: str = "") -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = command.run(command.parse(list(argv)), io.StringIO(stdin), out, err)
    return Run(code, out.getvalue(), err.getvalue())


def corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_file())


def convert_corpus(name: str) -> Run:
    """Convert one corpus file for the demo's nodes, from inside the corpus folder (so the
    output names the file as given, not a machine's path)."""
    cwd = Path.cwd()
    os.chdir(CORPUS)
    try:
        return convert(*(f"--node={n}" for n in NODES), name)
    finally:
        os.chdir(cwd)
