"""``rkt-operator`` under yappi, for ``bench_agent.py --profile FILE``.

Usage: ``profiled_agent.py OUT.txt -- <rkt-operator arguments>``. Runs ``rkt_operator.cli.main``
in this process with yappi's CPU clock on every thread (the event loop and the worker
threads where the kubernetes client sends its requests), and at exit writes to ``OUT.txt``
the functions sorted by total and by own CPU time, and the CPU per thread. The profile costs
the agent CPU of its own: compare its shares, not its absolute times, with the
un-profiled figures.
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import yappi


def _write(out: Path) -> None:
    yappi.stop()
    stats = yappi.get_func_stats()
    with out.open("w") as fh:
        for key, title in (("ttot", "total (with callees)"), ("tsub", "own")):
            fh.write(f"== functions by {title} CPU time\n")
            stats.sort(key, "desc")
            stats.print_all(
                out=fh,
                columns={
                    0: ("name", 110),
                    1: ("ncall", 12),
                    2: ("tsub", 8),
                    3: ("ttot", 8),
                    4: ("tavg", 8),
                },
            )
            fh.write("\n")
        fh.write("== threads\n")
        yappi.get_thread_stats().print_all(out=fh)


def main() -> int:
    out = Path(sys.argv[1])
    argv = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    from rkt_operator import cli

    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    atexit.register(_write, out)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
