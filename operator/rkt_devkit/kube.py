"""Small helpers for tests that talk to the local control plane through kubectl.

``wait_for`` polls a condition with a generous deadline (tests never assert timing);
``get_json`` reads one object (or ``None`` when it does not exist); ``unique_name`` makes
DNS-label names that do not collide between tests sharing one control plane.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Kubectl(Protocol):
    """The shape of :meth:`ControlPlane.kubectl` (and the ``kubectl`` test fixture)."""

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> Any: ...


class WaitTimeout(AssertionError):
    """``wait_for`` gave up; the message says what was awaited and the last value seen."""


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Raises :class:`WaitTimeout` after ``timeout`` seconds. Exceptions from ``predicate``
    propagate (make it return a falsy value for "not yet").
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise WaitTimeout(f"gave up waiting for {what} after {timeout:.0f}s (last: {last!r})")
        time.sleep(interval)


def get_json(
    kubectl: Kubectl, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """The object ``kind/name`` as a dict, or ``None`` when the API server says NotFound."""
    ns = [f"--namespace={namespace}"] if namespace else []
    done = kubectl("get", kind, name, *ns, "-o", "json", "--ignore-not-found", check=True)
    text = str(done.stdout).strip()
    if not text:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"kubectl get {kind} {name} returned {type(value).__name__}")
    return value


def unique_name(hint: str, *, max_length: int = 63) -> str:
    """A valid DNS label from ``hint`` plus a random suffix (``test-foo-3fa2c1``)."""
    base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-") or "x"
    suffix = secrets.token_hex(3)
    base = base[: max_length - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}"
