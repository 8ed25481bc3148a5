"""What every command needs: the global flags, the simulator's own settings, and output.

The simulator-only settings live in ``<dir>/.sim-config.json`` (never in rkt's flags, so an
unmodified rkt command line works against the simulator): see the package docstring.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rkt_sim.errors import FlagError, SimError

TYPE_CHECKING = False  # plain classes, no typing/dataclasses import: rkt-sim start-up cost
if TYPE_CHECKING:
    from collections.abc import Mapping

    from rkt_sim.flags import Parsed

RKT_VERSION = "1.30.0"
APPC_VERSION = "0.8.11"
SIM_CONFIG_FILE = ".sim-config.json"

INSECURE_OPTIONS = (
    "none",
    "image",
    "tls",
    "ondisk",
    "http",
    "pubkey",
    "capabilities",
    "paths",
    "seccomp",
    "all-fetch",
    "all-run",
    "all",
)
_INSECURE_GROUPS = {
    "all-fetch": ("image", "tls", "http", "pubkey"),
    "all-run": ("capabilities", "paths", "seccomp"),
    "all": ("image", "tls", "ondisk", "http", "pubkey", "capabilities", "paths", "seccomp"),
}


def parse_insecure(value: str) -> frozenset[str]:
    chosen: set[str] = set()
    for item in (v.strip() for v in value.split(",")):
        if item not in INSECURE_OPTIONS:
            allowed = ", ".join(INSECURE_OPTIONS)
            raise FlagError(
                f'invalid argument "{value}" for "--insecure-options" flag: '
                f'"{item}" is not a valid option, permissible values are: {allowed}'
            )
        chosen.update(_INSECURE_GROUPS.get(item, (item,)))
    chosen.discard("none")
    return frozenset(chosen)


class SimConfig:
    """Simulator-only knobs (``<dir>/.sim-config.json``); all default to rkt's behaviour."""

    __slots__ = ("allow_unprivileged", "appc_version", "rkt_version", "stop_grace_seconds")

    def __init__(
        self,
        allow_unprivileged: bool = False,
        stop_grace_seconds: float = 90.0,  # systemd's DefaultTimeoutStopSec in rkt's stage1
        rkt_version: str = RKT_VERSION,
        appc_version: str = APPC_VERSION,
    ) -> None:
        self.allow_unprivileged = allow_unprivileged
        self.stop_grace_seconds = stop_grace_seconds
        self.rkt_version = rkt_version
        self.appc_version = appc_version

    @classmethod
    def load(cls, data_dir: Path) -> SimConfig:
        try:
            raw = json.loads((data_dir / SIM_CONFIG_FILE).read_text())
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            return cls()
        except (OSError, ValueError) as exc:
            raise SimError(f"invalid simulator config {data_dir / SIM_CONFIG_FILE}: {exc}") from exc
        if not isinstance(raw, dict):
            raise SimError(f"invalid simulator config {data_dir / SIM_CONFIG_FILE}: not an object")
        return cls(
            allow_unprivileged=bool(raw.get("allow_unprivileged", False)),
            stop_grace_seconds=float(raw.get("stop_grace_seconds", 90.0)),
            rkt_version=str(raw.get("rkt_version", RKT_VERSION)),
            appc_version=str(raw.get("appc_version", APPC_VERSION)),
        )


def _abs_dir(flag: str, value: str) -> Path:
    if value == "":
        raise FlagError(f'invalid argument "" for "--{flag}" flag: "" is not a valid directory')
    return Path(os.path.abspath(value))


class Context:
    """The global state of one invocation."""

    def __init__(self, command: str, environ: Mapping[str, str] | None = None) -> None:
        self.command = command
        self.data_dir = Path("/var/lib/rkt")
        self.system_config = Path("/usr/lib/rkt")
        self.local_config = Path("/etc/rkt")
        self.user_config: Path | None = None
        self.debug = False
        self.insecure: frozenset[str] = frozenset()
        self.trust_keys_from_https = False
        self.environ: Mapping[str, str] = {} if environ is None else environ
        self.sim = SimConfig()

    @classmethod
    def from_flags(cls, command: str, parsed: Parsed, environ: Mapping[str, str]) -> Context:
        ctx = cls(command=command, environ=environ)
        if (value := parsed.last("dir")) is not None:
            ctx.data_dir = _abs_dir("dir", value)
        if (value := parsed.last("system-config")) is not None:
            ctx.system_config = _abs_dir("system-config", value)
        if (value := parsed.last("local-config")) is not None:
            ctx.local_config = _abs_dir("local-config", value)
        if (value := parsed.last("user-config")) is not None:
            ctx.user_config = _abs_dir("user-config", value)
        ctx.debug = parsed.boolean("debug")
        ctx.trust_keys_from_https = parsed.boolean("trust-keys-from-https")
        insecure: set[str] = set()
        for value in parsed.all("insecure-options"):
            insecure = set(parse_insecure(value))
        ctx.insecure = frozenset(insecure)
        ctx.data_dir = Path(os.path.realpath(ctx.data_dir))  # rkt resolves symlinks too
        ctx.sim = SimConfig.load(ctx.data_dir)
        return ctx

    @property
    def prefix(self) -> str:
        """rkt's stderr logger prefix is cobra's ``cmd.Name()``: the last word of the path."""
        return self.command.split()[-1]

    def out(self, line: str = "") -> None:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")

    def err(self, line: str, *, prefix: str | None = None) -> None:
        """One stderr line with rkt's logger prefix (the command's, or a package's own)."""
        text = f"{prefix or self.prefix}: {line}"
        sys.stderr.write(text if text.endswith("\n") else text + "\n")

    def skip_image_check(self) -> bool:
        return "image" in self.insecure

    def require_root(self) -> None:
        if os.geteuid() != 0 and not self.sim.allow_unprivileged:
            raise SimError("cannot run as unprivileged user")

    @property
    def privileged(self) -> bool:
        return os.geteuid() == 0
