"""Render the plain-YAML installation in ``manifests/`` from the Helm chart.

Owns one thing: turning ``helm template`` output (fixed release name and namespace, the
release Namespace with its Pod Security labels switched on) into numbered files, one object
each, that ``kubectl apply -f manifests/`` applies in a working order, plus a copy of the
CRD from ``crds/``. Helm bookkeeping (``# Source:`` lines, the ``helm.sh/chart`` and
``managed-by: Helm`` labels) is dropped: nothing in those files is managed by Helm. The
output depends only on the chart and the CRD, so a test can compare it with the committed
files.

    python -m rkt_devkit.render_manifests --helm <path to helm> [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RELEASE = "rkt-operator"
NAMESPACE = "rkt-operator"
CRD_FILE = "rkttasks.rktoperator.io.yaml"

# kubectl applies a folder in file-name order: the Namespace before what lives in it, the
# CRD before anything that might use it, RBAC before the workload that needs it.
# Roles come last only so that the older files kept their numbers (a Role needs only its
# Namespace, applied first).
ORDER = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
         "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
         "DaemonSet", "Role")  # fmt: skip
# Kinds the chart renders several objects of by default (the agent's and kubectl rkt's).
SEVERAL = ("ClusterRole", "Role")

HEADER = (
    "# Generated from helm/rkt-operator by `make manifests` (release {release}, namespace "
    "{namespace}).\n# Do not edit: change the chart and regenerate (a test checks they agree).\n"
)

_HELM_ONLY_LINE = re.compile(
    r"^(# Source: .*|\s+helm\.sh/chart: .*|\s+app\.kubernetes\.io/managed-by: Helm)$"
)
_KIND = re.compile(r"^kind: (\S+)$", re.MULTILINE)
_NAME = re.compile(r"^metadata:\n(?:  .*\n)*?  name: (\S+)$", re.MULTILINE)


class RenderError(RuntimeError):
    """helm failed, or its output holds an object this renderer does not expect."""


def helm_template(helm: Path, chart: Path) -> str:
    """``helm template`` of ``chart`` as the plain manifests want it (no CRDs: copied apart)."""
    with tempfile.TemporaryDirectory(prefix="rkt-operator-helm-") as home:
        # Helm keeps caches and config under these; a private empty home keeps the output
        # independent of whatever the user has configured.
        env = {
            f"HELM_{kind}_HOME": f"{home}/{kind.lower()}" for kind in ("CACHE", "CONFIG", "DATA")
        }
        env["HOME"] = home
        argv = [
            str(helm), "template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "--set", "podSecurity.createNamespace=true",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RenderError(f"helm template failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def split_documents(text: str) -> dict[str, str]:
    """The rendered objects by file name, Helm-only lines removed: one object per kind, or
    for the kinds in ``SEVERAL`` one per name."""
    objects: dict[str, str] = {}
    for raw in re.split(r"^---\s*$", text, flags=re.MULTILINE):
        lines = [line for line in raw.splitlines() if not _HELM_ONLY_LINE.match(line)]
        body = "\n".join(lines).strip("\n")
        if not body.strip():
            continue
        kinds = _KIND.findall(body)
        if len(kinds) != 1:
            raise RenderError(f"expected one top-level kind per document, got {kinds}:\n{body}")
        kind = kinds[0]
        named = _NAME.search(body + "\n")
        if kind not in ORDER or named is None:
            raise RenderError(f"unexpected {kind} in the chart's output")
        name = file_name(kind, named[1] if kind in SEVERAL else RELEASE)
        if name in objects:
            raise RenderError(f"repeated {kind} {named[1]} in the chart's output")
        objects[name] = body + "\n"
    return objects


def file_name(kind: str, name: str = RELEASE) -> str:
    """``02-serviceaccount.yaml``: the apply order, then the kind; then, for an object not
    named after the release, its name without the release's prefix
    (``03-clusterrole-task-viewer.yaml``)."""
    if kind == "CustomResourceDefinition":
        return f"{ORDER.index(kind):02d}-crd-{CRD_FILE}"
    suffix = "" if name == RELEASE else "-" + name.removeprefix(RELEASE + "-")
    return f"{ORDER.index(kind):02d}-{kind.lower()}{suffix}.yaml"


def render(helm: Path, *, chart: Path, crd: Path, out: Path) -> list[Path]:
    """Write the manifests into ``out`` (its old ``*.yaml`` files removed); the files written."""
    if not crd.is_file():
        raise RenderError(f"no CRD at {crd}: run `make crds` first")
    objects = split_documents(helm_template(helm, chart))
    kinds = {kind for body in objects.values() for kind in _KIND.findall(body)}
    missing = [kind for kind in ORDER if kind not in kinds and kind != "CustomResourceDefinition"]
    if missing:
        raise RenderError(f"the chart rendered no {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.yaml"):
        old.unlink()
    header = HEADER.format(release=RELEASE, namespace=NAMESPACE)
    written: list[Path] = []
    for name, body in objects.items():
        path = out / name
        path.write_text(header + body)
        written.append(path)
    crd_path = out / file_name("CustomResourceDefinition")
    shutil.copyfile(crd, crd_path)
    written.append(crd_path)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rkt_devkit.render_manifests")
    parser.add_argument("--helm", type=Path, required=True, help="the helm v3 binary")
    parser.add_argument("--chart", type=Path, default=REPO / "helm" / "rkt-operator")
    parser.add_argument("--crd", type=Path, default=REPO / "crds" / CRD_FILE)
    parser.add_argument("--out", type=Path, default=REPO / "manifests")
    args = parser.parse_args(argv)
    try:
        written = render(args.helm, chart=args.chart, crd=args.crd, out=args.out)
    except (RenderError, OSError) as exc:
        sys.stderr.write(f"render_manifests: {exc}\n")
        return 1
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
