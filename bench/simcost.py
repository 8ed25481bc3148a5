"""rkt-sim's own cost per invocation: CPU milliseconds (user + system, the child alone) and
wall milliseconds for the commands the agent runs, next to a bare interpreter start.

It builds a throw-away store (the benchmark's busybox image), prepares one pod, then runs
each command ``--runs`` times and prints, per command, the mean CPU per invocation (from the
children's rusage) and the median wall time. CPU is the figure to compare: wall time follows
whatever else the machine is doing. ``--compare OTHER`` also runs another ``rkt-sim`` (another
checkout's, e.g. main's) on the same store, alternating call by call with this one, so both
see the same load. Prints figures only.

    .venv/bin/python bench/simcost.py [--runs 40] [--compare /work/main/.venv/bin/rkt-sim]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simnode import IMAGE_NAME, IMAGE_VERSION, SimNode

VENV_BIN = Path(sys.executable).parent


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(argvs: list[list[str]], runs: int) -> list[tuple[float, float]]:
    """(mean CPU ms, median wall ms) per invocation of each of ``argvs``, alternating."""
    walls: list[list[float]] = [[] for _ in argvs]
    cpus = [0.0 for _ in argvs]
    for _ in range(runs):
        for index, argv in enumerate(argvs):
            before, start = _cpu(), time.monotonic()
            subprocess.run(argv, capture_output=True, check=False)
            walls[index].append(time.monotonic() - start)
            cpus[index] += _cpu() - before
    return [
        (cpu * 1000 / runs, statistics.median(wall) * 1000)
        for cpu, wall in zip(cpus, walls, strict=True)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="invocations per command (40)")
    parser.add_argument("--compare", type=Path, help="another rkt-sim to measure alongside")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="simcost-") as tmp:
        node = SimNode(Path(tmp), rkt_sim=VENV_BIN / "rkt-sim")
        node.prepare()
        base = [str(VENV_BIN / "rkt-sim"), f"--dir={node.rkt_dir}"]
        done = subprocess.run(
            [*base, "--insecure-options=image", "prepare", f"{IMAGE_NAME}:{IMAGE_VERSION}"],
            capture_output=True,
            text=True,
            check=True,
        )
        uuid = done.stdout.strip().splitlines()[-1]
        cases = {
            "version": ["version"],
            "list --format=json": ["list", "--format=json"],
            "status": ["status", uuid],
            "cat-manifest": ["cat-manifest", uuid],
        }
        binaries = [str(VENV_BIN / "rkt-sim")] + ([str(args.compare)] if args.compare else [])
        head = f"{'command':22} {'CPU ms/call':>12} {'wall ms p50':>12}"
        if args.compare:
            head += f" {'other CPU ms':>13} {'other wall ms':>14}"
        print(f"{head}   ({args.runs} runs each; other: {args.compare})")
        (floor,) = _measure([[sys.executable, "-c", "pass"]], args.runs)
        print(f"{'python -c pass':22} {floor[0]:12.1f} {floor[1]:12.1f}")
        for name, words in cases.items():
            argvs = [[binary, f"--dir={node.rkt_dir}", *words] for binary in binaries]
            figures = _measure(argvs, args.runs)
            print(f"{name:22}" + "".join(f" {cpu:12.1f} {wall:12.1f}" for cpu, wall in figures))
        subprocess.run([*base, "rm", uuid], capture_output=True, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
