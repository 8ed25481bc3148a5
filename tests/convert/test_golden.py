"""Every file of the corpus converts to exactly its golden output: manifests, findings on
stderr and exit code (regenerate with RKT_OPERATOR_UPDATE_GOLDEN=1 after a deliberate
change, and review the diff)."""

from __future__ import annotations

import pytest
from convertlib import GOLDEN, UPDATE, convert_corpus, corpus_files


@pytest.mark.parametrize("name", corpus_files())
def test_corpus_file_converts_to_its_golden_output(name: str) -> None:
    run = convert_corpus(name)
    golden = GOLDEN / f"{name}.golden"
    if UPDATE:
        golden.write_text(run.golden_text())
    assert golden.exists(), f"no golden output for {name}: run with RKT_OPERATOR_UPDATE_GOLDEN=1"
    assert run.golden_text() == golden.read_text()


def test_every_golden_output_has_its_corpus_file() -> None:
    stale = {p.name.removesuffix(".golden") for p in GOLDEN.iterdir()} - set(corpus_files())
    assert not stale
