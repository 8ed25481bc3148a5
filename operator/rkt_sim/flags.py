"""A small re-implementation of the pflag/cobra flag grammar that rkt's CLI uses.

* ``--name=value`` always works; ``--name value`` works for value flags that have no
  "no-option default" (``--wait`` and ``--net`` have one, so ``--wait 5s`` is not a value);
  a bool flag given bare means ``true``.
* ``--`` ends flag parsing. Commands that turn interspersed flags off (prepare, enter) stop
  at the first positional argument; the others keep parsing flags after positionals.
* Global (persistent) flags are accepted before and after the subcommand name.

Parsing yields an ordered list of events so that position-dependent grammars (prepare's
per-app flags) can be interpreted by the caller.
"""

from __future__ import annotations

from rkt_sim.errors import FlagError

TYPE_CHECKING = False  # typing and dataclasses cost ~20 ms per rkt-sim start: not imported
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class Flag:
    """One flag. ``no_opt`` is the value used when the flag is given without ``=value``."""

    __slots__ = ("help", "hidden", "kind", "name", "no_opt")

    def __init__(
        self,
        name: str,
        kind: str = "string",  # "string" or "bool"
        no_opt: str | None = None,
        help: str = "",
        hidden: bool = False,
    ) -> None:
        self.name = name
        self.kind = kind
        self.no_opt = no_opt
        self.help = help
        self.hidden = hidden

    def _key(self) -> tuple[str, str, str | None, str, bool]:
        return (self.name, self.kind, self.no_opt, self.help, self.hidden)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flag) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Flag({self.name!r}, {self.kind!r})"

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"


def bool_flag(name: str, help_text: str = "", *, hidden: bool = False) -> Flag:
    return Flag(name, "bool", "true", help_text, hidden)


def str_flag(name: str, help_text: str = "", *, no_opt: str | None = None) -> Flag:
    return Flag(name, "string", no_opt, help_text)


def parse_bool(flag: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlagError(
        f'invalid argument "{value}" for "--{flag}" flag: '
        f'strconv.ParseBool: parsing "{value}": invalid syntax'
    )


class FlagEvent:
    __slots__ = ("flag", "value")

    def __init__(self, flag: Flag, value: str) -> None:
        self.flag = flag
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FlagEvent) and self.flag == other.flag and self.value == other.value
        )

    def __hash__(self) -> int:
        return hash((self.flag, self.value))

    def __repr__(self) -> str:
        return f"FlagEvent({self.flag.name!r}, {self.value!r})"


class Parsed:
    """The outcome of parsing: events in order, positionals, and what followed ``--``."""

    def __init__(
        self,
        events: list[FlagEvent] | None = None,
        positionals: list[str] | None = None,
        rest: list[str] | None = None,
        dashdash: bool = False,
        help: bool = False,
    ) -> None:
        self.events = [] if events is None else events
        self.positionals = [] if positionals is None else positionals
        self.rest = [] if rest is None else rest
        self.dashdash = dashdash
        self.help = help

    def last(self, name: str, default: str | None = None) -> str | None:
        value = default
        for event in self.events:
            if event.flag.name == name:
                value = event.value
        return value

    def all(self, name: str) -> list[str]:
        return [e.value for e in self.events if e.flag.name == name]

    def given(self, name: str) -> bool:
        return any(e.flag.name == name for e in self.events)

    def boolean(self, name: str) -> bool:
        value = self.last(name)
        return value is not None and parse_bool(name, value)


class FlagSet:
    """The flags one command accepts (its own plus the global ones)."""

    def __init__(self, flags: Iterable[Flag]) -> None:
        self.flags = {f.name: f for f in flags}

    def take_one(self, args: Sequence[str], index: int) -> tuple[FlagEvent | None, int]:
        """Parse the flag at ``args[index]``; return the event and the next index.

        Returns ``(None, index)`` when ``args[index]`` is not a flag.
        """
        arg = args[index]
        if not arg.startswith("-") or arg == "-" or arg == "--":
            return None, index
        if not arg.startswith("--"):
            if arg in ("-h",):
                return FlagEvent(_HELP, "true"), index + 1
            raise FlagError(f"unknown shorthand flag: '{arg[1]}' in {arg}")
        name, eq, value = arg[2:].partition("=")
        if not name or name.startswith(("-", "=")):
            raise FlagError(f"bad flag syntax: {arg}")
        if name == "help":
            return FlagEvent(_HELP, "true"), index + 1
        flag = self.flags.get(name)
        if flag is None:
            raise FlagError(f"unknown flag: --{name}")
        if eq:
            if flag.is_bool:
                parse_bool(name, value)
            return FlagEvent(flag, value), index + 1
        if flag.no_opt is not None:
            return FlagEvent(flag, flag.no_opt), index + 1
        if index + 1 >= len(args):
            raise FlagError(f"flag needs an argument: --{name}")
        return FlagEvent(flag, args[index + 1]), index + 2

    def parse(self, args: Sequence[str], *, interspersed: bool = True) -> Parsed:
        parsed = Parsed()
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--":
                parsed.dashdash = True
                parsed.rest = list(args[index + 1 :])
                return parsed
            event, nxt = self.take_one(args, index)
            if event is None:
                if not interspersed:
                    parsed.positionals = list(args[index:])
                    return parsed
                parsed.positionals.append(arg)
                index += 1
                continue
            if event.flag is _HELP:
                parsed.help = True
            else:
                parsed.events.append(event)
            index = nxt
        return parsed


_HELP = bool_flag("help", "help for this command")

GLOBAL_FLAGS = (
    bool_flag("debug", "print out more debug information to stderr"),
    str_flag("dir", "rkt data directory"),
    str_flag("system-config", "system configuration directory"),
    str_flag("local-config", "local configuration directory"),
    str_flag("user-config", "user configuration directory"),
    str_flag("insecure-options", "comma-separated list of security features to disable"),
    bool_flag("trust-keys-from-https", "automatically trust gpg keys fetched from https"),
    Flag("cpuprofile", hidden=True),
    Flag("memprofile", hidden=True),
)
GLOBAL_NAMES = frozenset(f.name for f in GLOBAL_FLAGS)
