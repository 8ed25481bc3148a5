"""Read a Nomad job file into plain Python values.

Three forms are accepted, as Nomad itself accepts them:

- HCL2 (Nomad >= 1.0), parsed by ``python-hcl2``. Its output keeps string literals in their
  quotes so that they can be told apart from expressions (``var.x``, ``1 + 2``), which this
  module wraps in ``Expr``: the converter never evaluates them;
- HCL1 (the Nomad 0.x syntax the rkt driver's jobs were written in), parsed by ``pyhcl``;
- JSON: the job of ``nomad job inspect`` / ``GET /v1/job/:id`` (``{"Job": {...}}`` or the
  bare job, CamelCase API names) or HCL's own JSON form (``{"job": {...}}``).

``syntax="auto"`` takes JSON when the text starts with ``{``, otherwise tries HCL2 and
falls back to HCL1 (a file both accept means the same in both for what is converted here).
An unreadable file raises ``JobFileError`` naming the file, the line and the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import hcl  # pyhcl
import hcl2
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

Syntax = Literal["auto", "hcl1", "hcl2", "json"]
Form = Literal["hcl1", "hcl2", "json-api", "json-hcl"]

_HCL2_OPTIONS = hcl2.SerializationOptions(
    with_comments=False,
    explicit_blocks=False,
    preserve_heredocs=False,
    strip_string_quotes=False,
)


class JobFileError(Exception):
    """An input file that cannot be read as a Nomad job: ``str()`` is ``FILE:LINE: reason``."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Expr:
    """An HCL2 expression the converter does not evaluate (``var.image``, ``1 + 2``)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class JobFile:
    """A parsed file: its ``form`` and its top-level value."""

    path: str
    form: Form
    body: dict[str, Any]


def read(
    path: str,
    text: str | None = None,
    *,
    syntax: Syntax = "auto",
    variables: dict[str, str] | None = None,
) -> JobFile:
    """Parse ``path`` (or ``text`` read from it) in the given or detected syntax. In HCL2,
    ``var.NAME`` takes its value from ``variables`` (``--var``) or the ``variable`` block's
    ``default``, as ``nomad job run -var`` does; other expressions stay ``Expr``."""
    parsed = _read(path, text, syntax=syntax)
    if parsed.form == "hcl2":
        return JobFile(parsed.path, parsed.form, with_variables(parsed.body, variables or {}))
    return parsed


def _read(path: str, text: str | None, *, syntax: Syntax) -> JobFile:
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise JobFileError(path, None, f"cannot read the file: {exc}") from None
    if syntax == "json" or (syntax == "auto" and text.lstrip().startswith("{")):
        return _json(path, text)
    if syntax == "hcl1":
        return JobFile(path, "hcl1", _hcl1(path, text))
    if syntax == "hcl2":
        return JobFile(path, "hcl2", _hcl2(path, text))
    try:
        return JobFile(path, "hcl2", _hcl2(path, text))
    except JobFileError as hcl2_error:
        try:
            return JobFile(path, "hcl1", _hcl1(path, text))
        except JobFileError:
            raise JobFileError(
                path, hcl2_error.line, f"{hcl2_error.reason} (not valid HCL1 either)"
            ) from None


def _json(path: str, text: str) -> JobFile:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobFileError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise JobFileError(path, 1, "a JSON job must be an object")
    if "job" in value:  # HCL's JSON form: the same tree as HCL1 produces
        return JobFile(path, "json-hcl", _hcl1(path, text))
    job = value.get("Job", value)
    if not isinstance(job, dict) or not ("TaskGroups" in job or "ID" in job):
        raise JobFileError(
            path,
            1,
            'not a Nomad job: expected {"Job": {...}}, a job with "ID" and '
            '"TaskGroups", or HCL\'s JSON form {"job": {...}}',
        )
    return JobFile(path, "json-api", job)


_HCL1_WHERE = re.compile(r"^Line (\d+), column \d+: ?(.*)$", re.DOTALL)


def _hcl1(path: str, text: str) -> dict[str, Any]:
    try:
        value = hcl.loads(text)
    except ValueError as exc:
        match = _HCL1_WHERE.match(str(exc))
        if match:
            raise JobFileError(path, int(match[1]), f"HCL1: {match[2].strip()}") from None
        raise JobFileError(path, None, f"HCL1: {exc}") from None
    if not isinstance(value, dict):
        raise JobFileError(path, 1, "HCL1: the file holds no blocks")
    return value


def _hcl2(path: str, text: str) -> dict[str, Any]:
    try:
        value = hcl2.loads(text, serialization_options=_HCL2_OPTIONS)
    except UnexpectedInput as exc:
        raise JobFileError(path, _line(exc), f"HCL2: {_lark_reason(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the parser's other errors carry no position
        raise JobFileError(path, None, f"HCL2: {exc}") from None
    plain = _unquote(value)
    if not isinstance(plain, dict):
        raise JobFileError(path, 1, "HCL2: the file holds no blocks")
    return plain


def _line(exc: UnexpectedInput) -> int | None:
    line = getattr(exc, "line", None)
    return line if isinstance(line, int) and line > 0 else None


def _lark_reason(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedToken):
        token = str(exc.token).strip() or "end of line"
        expected = sorted(exc.expected)[:6]
        return f"unexpected {token!r}" + (
            f" (expected one of {', '.join(expected)})" if expected else ""
        )
    if isinstance(exc, UnexpectedCharacters):
        return f"unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedEOF):
        return "unexpected end of file (a block or string is not closed)"
    return str(exc).splitlines()[0]


_VAR_REF = re.compile(r"\$\{var\.([A-Za-z_][A-Za-z0-9_-]*)\}")


def with_variables(tree: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """``tree`` with ``${var.NAME}`` replaced where NAME has a value: given, else the default
    of its ``variable "NAME"`` block. A whole-value reference keeps the value's type."""
    values: dict[str, Any] = {}
    blocks = tree.get("variable")
    for block in blocks if isinstance(blocks, list) else [blocks] if blocks else []:
        if isinstance(block, dict):
            for name, body in block.items():
                if isinstance(body, dict) and "default" in body:
                    values[str(name)] = body["default"]
    values.update(given)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, Expr):
            whole = _VAR_REF.fullmatch(value.text)
            if whole and whole[1] in values and not isinstance(values[whole[1]], Expr):
                return values[whole[1]]
            return value
        if isinstance(value, str) and "${var." in value:
            return _VAR_REF.sub(
                lambda m: (
                    str(values[m[1]])
                    if m[1] in values and isinstance(values[m[1]], str | int | float)
                    else m[0]
                ),
                value,
            )
        return value

    return {k: walk(v) for k, v in tree.items() if k != "variable"}


def _unquote(value: Any) -> Any:
    """python-hcl2's quoted strings -> str, unquoted expressions -> ``Expr``, recursively
    (block labels are quoted too)."""
    if isinstance(value, dict):
        return {_string(k) if isinstance(k, str) else k: _unquote(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str):
        return _string(value) if value.startswith('"') and value.endswith('"') else Expr(value)
    return value


def _string(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            return text[1:-1]
        return decoded if isinstance(decoded, str) else text[1:-1]
    return text
