"""``rkt version``: the five ``Key: value`` lines."""

from __future__ import annotations

from rkt_sim.context import Context
from rkt_sim.flags import GLOBAL_FLAGS, FlagSet, Parsed

VERSION_USAGE = "Usage:\n  rkt version\n"
VERSION_FLAGS = FlagSet(GLOBAL_FLAGS)
GO_VERSION = "go1.9.4"
FEATURES = "-TPM +SDJOURNAL"
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}


def run_version(ctx: Context, parsed: Parsed) -> int:
    del parsed
    import platform  # only version needs it (10 ms to import)

    machine = platform.machine()
    ctx.out(f"rkt Version: {ctx.sim.rkt_version}")
    ctx.out(f"appc Version: {ctx.sim.appc_version}")
    ctx.out(f"Go Version: {GO_VERSION}")
    ctx.out(f"Go OS/Arch: linux/{_GOARCH.get(machine, machine)}")
    ctx.out(f"Features: {FEATURES}")
    return 0
