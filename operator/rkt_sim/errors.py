"""The simulator's own failure type: how a command ends with a message and an exit code.

rkt prints errors through a logger whose prefix is the subcommand name (``status: ...``) and
exits 254 for nearly every failure; cobra's own flag errors are printed as ``Error: ...``.
Commands raise :class:`SimError`; ``main`` turns it into stderr text and the exit code.
"""

from __future__ import annotations

GENERIC_FAILURE = 254


class SimError(Exception):
    """A command failure.

    ``message`` is printed after the ``<subcommand>: `` prefix unless ``cobra`` is set, in
    which case it is printed as cobra does (``Error: <message>``). ``usage`` asks ``main`` to
    print the command usage on stdout first, as rkt does for argument-count mistakes.
    """

    def __init__(
        self,
        message: str = "",
        code: int = GENERIC_FAILURE,
        *,
        cobra: bool = False,
        usage: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.cobra = cobra
        self.usage = usage


class FlagError(SimError):
    """A flag could not be parsed (unknown flag, bad value): cobra's error path, exit 254."""

    def __init__(self, message: str) -> None:
        super().__init__(message, cobra=True)
