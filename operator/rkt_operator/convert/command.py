"""``rkt-operator convert FILE... [-o DIR] [--node NODE]...``: Nomad jobs -> RktTask YAML.

Manifests go to stdout as one multi-document YAML stream (ready for ``kubectl apply -f -``)
or, with ``-o DIR``, one ``<name>.yaml`` file each. Findings go to stderr, one line each,
naming job, group, task and stanza. Exit codes: 0 everything converted (notes only), 2
something was left out (a warning), 1 an input could not be read (file, line and reason
on stderr; nothing is written).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

import yaml

EXIT_OK = 0
EXIT_UNREADABLE = 1
EXIT_SKIPPED = 2


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "convert",
        help="convert Nomad job files (HCL1, HCL2, JSON) into RktTask manifests",
        description="Convert the rkt tasks of Nomad job files into RktTask manifests. "
        "Exit 0: all converted; 2: something had no equivalent (see the warnings); "
        "1: an input could not be read.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="job files ('-' for stdin)")
    parser.add_argument(
        "-o", "--output-dir", default=None, metavar="DIR",
        help="write one <name>.yaml per task into DIR instead of YAML on stdout",
    )  # fmt: skip
    parser.add_argument(
        "--node", action="append", default=[], metavar="NAME",
        help="node to bind tasks to (repeat: group instances are spread over the nodes in "
        "turn; a system job gets one instance per node). A constraint on "
        "${node.unique.name} wins.",
    )  # fmt: skip
    parser.add_argument("-n", "--namespace", default=None, help="metadata.namespace to set")
    parser.add_argument(
        "--syntax", choices=("auto", "hcl1", "hcl2", "json"), default="auto",
        help="input syntax (auto: JSON if it starts with '{', else HCL2, else HCL1)",
    )  # fmt: skip
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="value of an HCL2 variable (as nomad job run -var); otherwise its default",
    )  # fmt: skip
    parser.add_argument(
        "--no-nomad-env", dest="nomad_env", action="store_false",
        help="do not add the NOMAD_* variables the driver gave every task",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-mhz-per-core", type=int, default=None, metavar="MHZ",
        help="convert cpu MHz to cores at this clock (default: MHz become millicores, the "
        "quota Nomad's rkt driver applied)",
    )  # fmt: skip
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The arguments of ``rkt-operator convert`` alone (``argv`` after the word convert)."""
    top = argparse.ArgumentParser(prog="rkt-operator")
    add_parser(top.add_subparsers(dest="command", required=True))
    return top.parse_args(["convert", *argv])


class _NoAliases(yaml.SafeDumper):
    """Every value written out in full: no ``&id001`` / ``*id001`` in the manifests."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(manifest: Any) -> str:
    """One YAML document with its comment lines."""
    comments = "".join(f"# {line}\n" for line in manifest.comments)
    return comments + yaml.dump(
        manifest.body,
        Dumper=_NoAliases,
        sort_keys=False,
        default_flow_style=False,
        width=100,
        allow_unicode=True,
    )


def run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    from rkt_operator.convert import jobfile, mapping, nomad  # parsers load only when used

    if args.cpu_mhz_per_core is not None and args.cpu_mhz_per_core <= 0:
        stderr.write("rkt-operator convert: --cpu-mhz-per-core must be positive\n")
        return EXIT_SKIPPED
    variables: dict[str, str] = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            stderr.write(f"rkt-operator convert: --var {item!r}: expected NAME=VALUE\n")
            return EXIT_SKIPPED
        variables[name] = value
    jobs: list[tuple[str, list[nomad.Job]]] = []
    failed = False
    for path in args.files:
        try:
            text = stdin.read() if path == "-" else None
            parsed = jobfile.read(
                "<stdin>" if path == "-" else path, text, syntax=args.syntax, variables=variables
            )
            jobs.append((parsed.path, nomad.jobs(parsed)))
        except jobfile.JobFileError as exc:
            stderr.write(f"error: {exc}\n")
            failed = True
        except nomad.JobShapeError as exc:
            stderr.write(f"error: {path}: not a Nomad job: {exc}\n")
            failed = True
    if failed:
        return EXIT_UNREADABLE
    result = mapping.Result()
    names: set[str] = set()
    for path, file_jobs in jobs:
        options = mapping.Options(
            nodes=tuple(args.node),
            namespace=args.namespace,
            nomad_env=args.nomad_env,
            cpu_mhz_per_core=args.cpu_mhz_per_core,
            source=path,
        )
        one = mapping.convert(file_jobs, options, taken=names)
        result.manifests += one.manifests
        result.findings += one.findings
    for finding in result.findings:
        stderr.write(f"{finding}\n")
    if args.output_dir:
        directory = Path(args.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for manifest in result.manifests:
            (directory / f"{manifest.name}.yaml").write_text(render(manifest), encoding="utf-8")
    else:
        stdout.write("---\n".join(render(m) for m in result.manifests))
        stdout.flush()
    if not result.manifests:
        stderr.write("rkt-operator convert: no rkt task was converted\n")
    return EXIT_SKIPPED if result.skipped else EXIT_OK
