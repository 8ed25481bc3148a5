"""``rkt-operator`` under yappi or tracemalloc, for ``bench_agent.py --profile FILE`` and
``--profile-memory FILE``.

Usage: ``profiled_agent.py [--memory] OUT.txt -- <rkt-operator arguments>``. Runs
``rkt_operator.cli.main`` in this process and at exit writes to ``OUT.txt``:

- by default, yappi's CPU clock on every thread (the event loop and the worker threads where
  the kubernetes client sends its requests): the functions sorted by total and by own CPU
  time, and the CPU per thread. The profile costs the agent CPU of its own: compare its
  shares, not its absolute times, with the un-profiled figures;
- with ``--memory``, tracemalloc's view of the Python heap as the agent stops: the total
  traced, then the allocation sites holding the most (by line, and by file). tracemalloc
  costs memory of its own (about the traced size again), so the agent's RSS under it is not
  the figure to report; the shares are.
"""

from __future__ import annotations

import atexit
import sys
import tracemalloc
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


def _write_memory(out: Path) -> None:
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    traced = sum(stat.size for stat in snapshot.statistics("filename"))
    with out.open("w") as fh:
        fh.write(f"== traced Python heap at exit: {traced / 2**20:.1f} MiB\n\n")
        for key, top in (("lineno", 60), ("filename", 40)):
            fh.write(f"== top {top} allocation sites by {key}\n")
            for stat in snapshot.statistics(key)[:top]:
                frame = stat.traceback[0]
                fh.write(
                    f"{stat.size / 2**20:9.2f} MiB {stat.count:9d} blocks  "
                    f"{frame.filename}:{frame.lineno}\n"
                )
            fh.write("\n")


def main() -> int:
    args = sys.argv[1:]
    memory = args[:1] == ["--memory"]
    if memory:
        args = args[1:]
    out = Path(args[0])
    argv = args[2:] if args[1:2] == ["--"] else args[1:]
    if memory:
        tracemalloc.start(1)
        atexit.register(_write_memory, out)
    else:
        yappi.set_clock_type("cpu")
        yappi.start(builtins=False, profile_threads=True)
        atexit.register(_write, out)
    from rkt_operator import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
