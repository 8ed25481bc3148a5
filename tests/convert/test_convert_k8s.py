"""Every manifest the corpus converts to is accepted by the real API server with the
project's CRD (``kubectl apply --dry-run=server``): schema, CEL rules and all."""

from __future__ import annotations

import pytest
from convertlib import CORPUS, convert, convert_corpus, corpus_files

from rkt_devkit.kube import Kubectl

pytestmark = pytest.mark.k8s

CONVERTED = [n for n in corpus_files() if convert_corpus(n).documents]


def test_the_corpus_yields_manifests_to_check() -> None:
    assert len(CONVERTED) >= 8


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_manifests_pass_server_side_dry_run(
    kubectl: Kubectl, namespace: str, name: str
) -> None:
    run = convert_corpus(name)
    done = kubectl(
        "apply", "--dry-run=server", f"--namespace={namespace}", "-o", "name", "-f", "-",
        input=run.stdout,
    )  # fmt: skip
    applied = sorted(done.stdout.split())
    assert applied == sorted(
        f"rkttask.rktoperator.io/{d['metadata']['name']}" for d in run.documents
    )


def test_manifests_for_the_binder_pass_server_side_dry_run(
    kubectl: Kubectl, namespace: str
) -> None:
    # Without --node: no nodeName, nodeSelector / affinity from the job's constraints.
    run = convert(str(CORPUS / "hcl2-count-constraints.hcl"), str(CORPUS / "same-job.json"))
    assert any("nodeSelector" in d["spec"] for d in run.documents)
    done = kubectl(
        "apply", "--dry-run=server", f"--namespace={namespace}", "-o", "name", "-f", "-",
        input=run.stdout,
    )  # fmt: skip
    assert len(done.stdout.split()) == len(run.documents) == 6
