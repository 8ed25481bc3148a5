"""The ``rkt-sim`` entry point: find the subcommand, parse flags, apply faults, dispatch.

Command modules are imported lazily so that the frequent, cheap calls (``status``,
``list``) do not pay for the heavy ones (tar handling, process supervision). The modules on
the path of every call (this one, ``context``, ``flags``, ``faults``, ``errors``) import
neither ``typing`` nor ``dataclasses`` nor ``traceback``: with the interpreter's start-up
they were most of the CPU an invocation cost (``bench/simcost.py`` measures it).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

from rkt_sim import faults
from rkt_sim.context import Context
from rkt_sim.errors import FlagError, SimError
from rkt_sim.flags import GLOBAL_FLAGS, GLOBAL_NAMES, FlagSet, Parsed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class Spec:
    __slots__ = ("flags", "function", "interspersed", "module", "parser", "usage")

    def __init__(
        self,
        module: str,
        function: str,
        flags: str,  # attribute holding the FlagSet, or "" when ``parser`` parses the args
        usage: str,
        interspersed: bool = True,
        parser: str = "",  # a function returning an object with ``events`` (prepare, fetch)
    ) -> None:
        self.module = module
        self.function = function
        self.flags = flags
        self.usage = usage
        self.interspersed = interspersed
        self.parser = parser


_S = "rkt_sim."
COMMANDS: dict[str, Spec] = {
    "version": Spec(_S + "cmd_misc", "run_version", "VERSION_FLAGS", "VERSION_USAGE"),
    "prepare": Spec(_S + "cmd_prepare", "run", "", "USAGE", parser="parse"),
    "run-prepared": Spec(_S + "cmd_run", "run", "FLAGSET", "USAGE"),
    "status": Spec(_S + "cmd_status", "run_status", "STATUS_FLAGS", "STATUS_USAGE"),
    "list": Spec(_S + "cmd_status", "run_list", "LIST_FLAGS", "LIST_USAGE"),
    "cat-manifest": Spec(_S + "cmd_status", "run_cat_manifest", "CAT_FLAGS", "CAT_USAGE"),
    "stop": Spec(_S + "cmd_lifecycle", "run_stop", "STOP_FLAGS", "STOP_USAGE"),
    "rm": Spec(_S + "cmd_lifecycle", "run_rm", "RM_FLAGS", "RM_USAGE"),
    "gc": Spec(_S + "cmd_lifecycle", "run_gc", "GC_FLAGS", "GC_USAGE"),
    "enter": Spec(_S + "cmd_enter", "run", "FLAGSET", "USAGE", interspersed=False),
    "trust": Spec(_S + "cmd_images", "run_trust", "TRUST_FLAGS", "TRUST_USAGE"),
    "fetch": Spec(_S + "cmd_images", "run_fetch", "", "FETCH_USAGE", parser="parse_fetch"),
    "image list": Spec(_S + "cmd_images", "run_image_list", "IMAGE_LIST_FLAGS", "IMAGE_LIST_USAGE"),
    "image fetch": Spec(_S + "cmd_images", "run_fetch", "", "FETCH_USAGE", parser="parse_fetch"),
    "image rm": Spec(_S + "cmd_images", "run_image_rm", "IMAGE_RM_FLAGS", "IMAGE_RM_USAGE"),
    "sim-import-remote": Spec(
        _S + "cmd_images", "run_import_remote", "REMOTE_FLAGS", "REMOTE_USAGE"
    ),
}
HIDDEN = frozenset({"sim-import-remote", "image fetch"})
GLOBALS = FlagSet(GLOBAL_FLAGS)

ROOT_HELP = """A CLI for running app containers on Linux (rkt-sim: a faithful rkt simulator).

Usage:
  rkt [command]

Available Commands:
{commands}

Flags:
      --debug                    print out more debug information to stderr
      --dir string               rkt data directory (default "/var/lib/rkt")
      --insecure-options string  comma-separated list of security features to disable
      --local-config string      local configuration directory (default "/etc/rkt")
      --system-config string     system configuration directory (default "/usr/lib/rkt")
      --trust-keys-from-https    automatically trust gpg keys fetched from https
      --user-config string       user configuration directory

Use "rkt [command] --help" for more information about a command.
"""


def _root_help() -> str:
    names = sorted(n for n in COMMANDS if n not in HIDDEN)
    return ROOT_HELP.format(commands="\n".join(f"  {n}" for n in names))


# One line per command for the NAME: section of its usage (the simulator's own wording).
SUMMARIES = {
    "version": "Print the version and exit",
    "prepare": "Prepare a pod from images and leave it ready to run",
    "run-prepared": "Run a prepared pod",
    "status": "Show the state of a pod",
    "list": "List the pods and their states",
    "cat-manifest": "Print the pod manifest",
    "stop": "Stop running pods",
    "rm": "Remove pods and their on-disk state",
    "gc": "Collect exited and expired pods",
    "enter": "Run a command inside an app of a running pod",
    "trust": "Trust a key for signed images",
    "fetch": "Fetch images into the store",
    "image list": "List the images in the store",
    "image fetch": "Fetch images into the store",
    "image rm": "Remove images from the store",
    "sim-import-remote": "Simulator only: register an image file for a remote name",
}


def _option_lines(flags: Any) -> list[str]:
    return [
        f"      --{f.name}\t{f.help}".rstrip()
        for f in sorted(flags, key=lambda f: f.name)
        if not f.hidden and f.name != "help"
    ]


def usage_text(command: str, module: Any, spec: Spec) -> str:
    """A command's usage in rkt's layout: NAME, USAGE, OPTIONS, GLOBAL OPTIONS (on stdout)."""
    lines = [ln.strip() for ln in getattr(module, spec.usage).splitlines()]
    synopsis = next((ln for ln in lines if ln and ln != "Usage:"), f"rkt {command}")
    own = getattr(module, spec.flags).flags.values() if spec.flags else ()
    options = _option_lines(f for f in own if f.name not in GLOBAL_NAMES)
    text = f"NAME:\n\t{command.split()[-1]} - {SUMMARIES.get(command, '')}\n\n"
    text += f"USAGE:\n\t{synopsis}\n\n"
    if options:
        text += "OPTIONS:\n" + "\n".join(options) + "\n\n"
    return text + "GLOBAL OPTIONS:\n" + "\n".join(_option_lines(GLOBAL_FLAGS)) + "\n\n"


def _match(word: str, candidates: Sequence[str]) -> str | None:
    """cobra with prefix matching: an exact name or a unique prefix."""
    if word in candidates:
        return word
    found = [c for c in candidates if c.startswith(word)]
    return found[0] if len(found) == 1 else None


def _split(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """(global args before the command, command path, the command's own args)."""
    index = 0
    pre: list[str] = []
    while index < len(argv):
        arg = argv[index]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        event, nxt = GLOBALS.take_one(argv, index)
        pre.extend(argv[index:nxt])
        index = nxt if event is not None else index + 1
    if index >= len(argv) or argv[index] == "--":
        return pre, None, list(argv[index:])
    top = [n.split()[0] for n in COMMANDS]
    name = _match(argv[index], sorted(set(top)))
    if name is None:
        raise FlagError(f'unknown command "{argv[index]}" for "rkt"\nRun \'rkt --help\' for usage.')
    rest = list(argv[index + 1 :])
    if name == "image":
        subs = sorted(n.split()[1] for n in COMMANDS if n.startswith("image "))
        for pos, arg in enumerate(rest):
            if not arg.startswith("-"):
                sub = _match(arg, subs)
                if sub is None:
                    raise FlagError(f'unknown command "{arg}" for "rkt image"')
                return pre + rest[:pos], f"image {sub}", rest[pos + 1 :]
        return pre + rest, "image", []
    return pre, name, rest


def _environment() -> dict[str, str]:
    # rkt's --inherit-env hands the caller's environment to the apps: this standalone CLI is
    # the one place in the simulator that reads it, once, and passes it on explicitly.
    return dict(os.environ)  # noqa: TID251


def _run(argv: Sequence[str]) -> int:
    pre, command, rest = _split(argv)
    pre_parsed = GLOBALS.parse(pre)
    if command is None:
        if pre_parsed.help:
            sys.stdout.write(_root_help())
            return 0
        sys.stderr.write("rkt: missing command\n")
        sys.stdout.write(_root_help())
        return 2
    if command == "image":
        sys.stdout.write("Usage:\n  rkt image [command]\n")
        return 0
    spec = COMMANDS[command]
    module: Any = importlib.import_module(spec.module)
    payload: Any
    try:
        if spec.flags:
            parsed: Parsed = getattr(module, spec.flags).parse(rest, interspersed=spec.interspersed)
            payload = parsed
            events = parsed.events
            wants_help = parsed.help
        else:
            payload = getattr(module, spec.parser)(rest)
            events = payload.events
            wants_help = any(e.flag.name == "help" for e in events)
    except FlagError as exc:
        # cobra: the error and a blank line on stderr, the command's usage on stdout.
        sys.stderr.write(f"Error: {exc.message}\n\n")
        sys.stdout.write(usage_text(command, module, spec))
        return exc.code
    if wants_help or pre_parsed.help:
        sys.stdout.write(usage_text(command, module, spec))
        return 0
    context_flags = Parsed(events=[*pre_parsed.events, *events])
    ctx = Context.from_flags(command, context_flags, _environment())
    try:
        exit_code = faults.apply(faults.consume(ctx.data_dir, command, argv), ctx.prefix)
        if exit_code is not None:
            return exit_code
        return int(getattr(module, spec.function)(ctx, payload))
    except SimError as exc:
        if exc.usage:
            sys.stdout.write(usage_text(command, module, spec))
        if exc.message and exc.cobra:
            sys.stderr.write(f"Error: {exc.message}\n")
        elif exc.message:
            ctx.err(exc.message)
        return exc.code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _run(args)
    except SimError as exc:
        if exc.message:
            if exc.cobra:
                sys.stderr.write(f"Error: {exc.message}\n")
            else:
                name = _command_name(args)
                sys.stderr.write(f"{name}: {exc.message}\n")
        code = exc.code
    except BrokenPipeError:
        code = 254
    except Exception as exc:  # noqa: BLE001 - a CLI ends with rkt's generic code, not a traceback
        if "--debug" in args:
            import traceback  # only on a crash: it costs ~8 ms to import

            traceback.print_exc()
        sys.stderr.write(f"{_command_name(args)}: internal error: {exc}\n")
        code = 254
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    return code


def _command_name(args: Sequence[str]) -> str:
    try:
        _, command, _ = _split(args)
    except SimError:
        return "rkt"
    return (command or "rkt").split()[-1]


if __name__ == "__main__":
    raise SystemExit(main())
