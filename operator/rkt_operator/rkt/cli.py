"""``RktCli``: the only code that starts rkt processes.

Every call is an argument list (never a shell) prefixed with the binary and the node-level
global flags ``--dir`` / ``--local-config``, runs with a deadline (the whole process group is
killed when it passes: ``RktTimeout``), captures size-limited output and, on a non-zero exit,
raises the error ``rkt_operator.rkt.parse.classify`` picks. stdout is parsed only after a
zero exit. Values in a plan's ``redact`` set never reach a log line or an error.

The rkt process gets the agent's environment minus ``settings.env_blacklist``. An optional
``observer`` is told the subcommand and duration of every command that ran to its end or to
its deadline (the agent's metrics hang there).

Size: the one place that starts rkt: every subcommand wrapper shares the runner, its
timeouts, redaction and error classification, so they stay together.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rkt_operator import errors
from rkt_operator.rkt import attached, parse, pods
from rkt_operator.rkt.pods import PodStatus, PodStatusText, RktVersion
from rkt_operator.rkt.types import ClientInput, LaunchPlan
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# Told (subcommand, seconds) after each rkt command; must be quick and must not raise.
CommandObserver = Callable[[str, float], None]

MAX_STDOUT_BYTES = parse.MAX_OUTPUT_CHARS
MAX_STDERR_BYTES = 256 * 1024
ENTER_OUTPUT_BYTES = 4096  # Nomad's Exec keeps the last 4 KiB of merged output
_CHUNK = 64 * 1024
# A pod UUID or a prefix of one, as rkt accepts it on the command line. Anything else
# (a flag, a path) must never be passed where rkt expects a UUID.
_UUID_ARG_RE = re.compile(r"^[0-9a-f][0-9a-f-]{0,35}$")


@dataclass(frozen=True)
class RktResult:
    """A finished rkt command (argv redacted)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def redact(argv: Sequence[str], secrets: Collection[str]) -> tuple[str, ...]:
    """``argv`` with every occurrence of a secret value replaced by ``***``."""
    values = sorted((s for s in secrets if s), key=len, reverse=True)
    out = []
    for word in argv:
        for value in values:
            word = word.replace(value, "***")
        out.append(word)
    return tuple(out)


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string (``30s``, ``0.5s``) for rkt's duration flags."""
    return f"{seconds:g}s"


def _check_uuid(uuid: str) -> str:
    if not _UUID_ARG_RE.match(uuid):
        raise errors.PodNotFound(f"invalid pod UUID {uuid[:80]!r}")
    return uuid


class _Capped:
    """Drains a stream, keeping the first (or last) ``limit`` bytes."""

    def __init__(self, limit: int, *, tail: bool = False) -> None:
        self.limit = limit
        self.tail = tail
        self.data = bytearray()
        self.truncated = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_CHUNK):
            self.data += chunk
            if len(self.data) > self.limit:
                self.truncated = True
                if self.tail:
                    del self.data[: len(self.data) - self.limit]
                else:
                    del self.data[self.limit :]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class RktCli:
    """Async adapter over the rkt binary named in the settings (or ``rkt-sim``)."""

    def __init__(self, settings: Settings, *, observer: CommandObserver | None = None) -> None:
        self.settings = settings
        self._env = settings.host_environment
        self._observer = observer

    # ------------------------------------------------------------------ plumbing

    def base_argv(self) -> list[str]:
        """The binary and the global flags every command starts with."""
        s = self.settings
        return [s.rkt_path, f"--dir={s.rkt_dir}", f"--local-config={s.rkt_local_config}"]

    async def run(
        self,
        args: Sequence[str],
        *,
        deadline: float | None = None,
        secrets: Collection[str] = (),
        pass_fds: Sequence[int] = (),
        merge_stderr: bool = False,
        check: bool = True,
        output_limit: int | None = None,
    ) -> RktResult:
        """Run ``rkt <global flags> <args>``; raise the classified error on a non-zero exit
        when ``check``. ``pass_fds`` are inherited by rkt (the executor's start lock).
        ``output_limit`` bounds the merged output kept with ``merge_stderr`` (its tail)."""
        argv = [*self.base_argv(), *args]
        shown = redact(argv, secrets)
        limit = self.settings.rkt_timeout_seconds if deadline is None else deadline
        log.debug("rkt exec argv=%s timeout=%s", shlex.join(shown), limit)
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
                env=self._env,
                start_new_session=True,  # its own process group, killed as a whole on timeout
                pass_fds=tuple(pass_fds),
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise errors.RktUnavailable(
                f"cannot execute rkt binary {self.settings.rkt_path!r}: {exc.strerror}",
                argv=shown,
            ) from exc
        if merge_stderr:
            out = _Capped(output_limit or ENTER_OUTPUT_BYTES, tail=True)
        else:
            out = _Capped(MAX_STDOUT_BYTES)
        err = _Capped(MAX_STDERR_BYTES, tail=True)
        try:
            await asyncio.wait_for(
                asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr), proc.wait()),
                limit,
            )
        except TimeoutError:
            await self._kill(proc)
            self._observe(argv, started)
            log.warning("rkt timeout argv=%s timeout=%s", shlex.join(shown), limit)
            raise errors.RktTimeout(
                f"rkt {parse.subcommand(argv)} did not finish within {limit:g}s",
                argv=shown,
                stdout=out.text()[-4096:],
                stderr=err.text()[-4096:],
            ) from None
        except BaseException:
            await self._kill(proc)
            raise
        self._observe(argv, started)
        rc = proc.returncode if proc.returncode is not None else -1
        result = RktResult(argv=shown, returncode=rc, stdout=out.text(), stderr=err.text())
        log.debug(
            "rkt done sub=%s rc=%d seconds=%.3f",
            parse.subcommand(argv),
            rc,
            time.monotonic() - started,
        )
        if check and rc != 0:
            stdout, stderr = redact((result.stdout, result.stderr), secrets)
            raise parse.classify(shown, rc, stdout, stderr)
        if out.truncated and not merge_stderr:
            raise errors.RktOutputError(
                f"rkt {parse.subcommand(argv)} printed more than {MAX_STDOUT_BYTES} bytes",
                argv=shown,
                returncode=rc,
            )
        return result

    def _observe(self, argv: Sequence[str], started: float) -> None:
        if self._observer is not None:
            self._observer(parse.subcommand(argv), time.monotonic() - started)

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)

    # ------------------------------------------------------------------ commands

    async def version(self, *, deadline: float | None = None) -> RktVersion:
        """``rkt version``; raises ``RktUnavailable`` if the binary cannot run."""
        return parse.parse_version((await self.run(["version"], deadline=deadline)).stdout)

    async def trust(self, args: Sequence[str], *, secrets: Collection[str] = ()) -> None:
        """``rkt trust ...`` from a plan (``args`` include the subcommand); ``TrustError``."""
        await self.run(args, secrets=secrets)

    async def prepare(
        self,
        args: Sequence[str],
        *,
        secrets: Collection[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> str:
        """``rkt prepare ...`` from a plan (``args`` include the subcommand) -> the pod UUID."""
        result = await self.run(args, secrets=secrets, pass_fds=pass_fds)
        try:
            return parse.parse_uuid(result.stdout)
        except errors.RktOutputError as exc:
            raise errors.RktOutputError(
                exc.message, argv=result.argv, returncode=0, stdout=result.stdout[-4096:]
            ) from None

    async def status(self, uuid: str, *, deadline: float | None = None) -> PodStatus:
        """``rkt status --format=json UUID``; ``PodNotFound`` once rkt forgot the pod."""
        args = ["status", "--format=json", _check_uuid(uuid)]
        return self._parsed(parse.parse_status_json, await self.run(args, deadline=deadline))

    async def status_text(self, uuid: str, *, deadline: float | None = None) -> PodStatusText:
        """``rkt status UUID`` (text): the only format with the pod's pid."""
        result = await self.run(["status", _check_uuid(uuid)], deadline=deadline)
        return self._parsed(parse.parse_status_text, result)

    async def list(self, *, deadline: float | None = None) -> builtins.list[PodStatus]:
        """``rkt list --format=json``: every pod rkt can convert (``null`` -> empty)."""
        result = await self.run(["list", "--format=json"], deadline=deadline)
        return self._parsed(parse.parse_list_json, result)

    async def aborted_prepares(self, *, deadline: float | None = None) -> builtins.list[str]:
        """``rkt list --full --no-legend`` -> UUIDs of ``aborted prepare`` pods (the JSON
        listing leaves them out)."""
        result = await self.run(["list", "--full", "--no-legend"], deadline=deadline)
        return parse.parse_aborted_prepares(result.stdout)

    async def cat_manifest(self, uuid: str, *, deadline: float | None = None) -> dict[str, Any]:
        """``rkt cat-manifest --pretty-print=false UUID`` -> the PodManifest object."""
        args = ["cat-manifest", "--pretty-print=false", _check_uuid(uuid)]
        return self._parsed(parse.parse_manifest, await self.run(args, deadline=deadline))

    async def stop(self, uuid: str, *, force: bool = False, deadline: float | None = None) -> None:
        """``rkt stop [--force] UUID``: signals and returns at once; an already stopped pod
        is success, a not-yet-running one ``PodWrongState``."""
        args = ["stop", *(["--force"] if force else []), _check_uuid(uuid)]
        await self.run(args, deadline=deadline)

    async def rm(self, uuid: str, *, deadline: float | None = None) -> None:
        """``rkt rm UUID``; ``PodWrongState`` while running or being prepared."""
        await self.run(["rm", _check_uuid(uuid)], deadline=deadline)

    async def gc(
        self,
        *,
        grace_period: float | None = None,
        expire_prepared: float | None = None,
        mark_only: bool = False,
        deadline: float | None = None,
    ) -> None:
        """``rkt gc``: mark exited pods, then (unless ``mark_only``) sweep old garbage."""
        args = ["gc"]
        if grace_period is not None:
            args.append(f"--grace-period={go_duration(grace_period)}")
        if expire_prepared is not None:
            args.append(f"--expire-prepared={go_duration(expire_prepared)}")
        if mark_only:
            args.append("--mark-only")
        await self.run(args, deadline=deadline)

    async def enter(
        self,
        uuid: str,
        cmd: Sequence[str],
        *,
        app: str | None = None,
        deadline: float | None = None,
        output_limit: int = ENTER_OUTPUT_BYTES,
    ) -> tuple[str, int]:
        """``rkt enter [--app=NAME] UUID CMD...`` with Nomad's Exec semantics: the last 4 KiB
        (``output_limit``) of merged stdout+stderr and the command's exit code, non-zero
        included. Only rkt's own refusal (pod unknown or not running) raises."""
        if not cmd:
            raise errors.SpecError("error cmd must have at least one value")
        args = ["enter", *([f"--app={app}"] if app else []), _check_uuid(uuid), *cmd]
        result = await self.run(
            args, deadline=deadline, merge_stderr=True, check=False, output_limit=output_limit
        )
        if result.returncode == 254:
            last = result.stdout.rstrip().rsplit("\n", 1)[-1]
            if last.startswith("enter: "):
                error = parse.classify(result.argv, 254, "", result.stdout)
                if type(error) is not errors.RktError:
                    raise error
        return result.stdout, result.returncode

    def enter_argv(
        self, uuid: str, cmd: Sequence[str], *, app: str | None = None
    ) -> builtins.list[str]:
        """The full argv of ``rkt enter [--app=NAME] UUID CMD...``."""
        if not cmd:
            raise errors.SpecError("error cmd must have at least one value")
        app_flag = [f"--app={app}"] if app else []
        return [*self.base_argv(), "enter", *app_flag, _check_uuid(uuid), *cmd]

    def enter_attached(
        self,
        uuid: str,
        cmd: Sequence[str],
        *,
        app: str | None = None,
        tty: bool = False,
        client_input: ClientInput = "inherit",
    ) -> int:
        """``rkt enter`` attached to this process (blocking): stdin forwarded, stdout and
        stderr apart, or with ``tty`` on a new pseudo-terminal. The command's exit code
        (254 when rkt itself refuses, as ``rkt enter`` exits). ``client_input``: what stdin
        is (``ClientInput``); when it shows the client went, what ``rkt enter`` started in
        the pod is ended (see ``attached``)."""
        argv = self.enter_argv(uuid, cmd, app=app)
        log.debug(
            "rkt enter attached argv=%s tty=%s client_input=%s",
            shlex.join(argv), tty, client_input,
        )  # fmt: skip
        runner = attached.run_in_pty if tty else attached.run_inherited
        try:
            return runner(argv, self._env, client_input=client_input)
        except (FileNotFoundError, PermissionError) as exc:
            raise errors.RktUnavailable(
                f"cannot execute rkt binary {self.settings.rkt_path!r}: {exc.strerror}",
                argv=argv,
            ) from exc

    def run_prepared_command(self, plan: LaunchPlan, uuid: str) -> builtins.list[str]:
        """The full argv that runs a prepared pod (for the launcher; blocks for its life)."""
        if not pods.UUID_RE.match(uuid):
            raise errors.PodNotFound(f"invalid pod UUID {uuid[:80]!r}")
        return [*self.base_argv(), *plan.run_prepared, uuid]

    @staticmethod
    def _parsed(parser: Callable[[str], T], result: RktResult) -> T:
        try:
            return parser(result.stdout)
        except errors.RktOutputError as exc:
            raise errors.RktOutputError(
                exc.message,
                argv=result.argv,
                returncode=result.returncode,
                stdout=result.stdout[-4096:],
                stderr=result.stderr[-4096:],
            ) from None
