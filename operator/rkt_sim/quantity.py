"""Kubernetes-style resource quantities, as appc's resource isolators parse and print them.

``--memory=256M`` and ``--cpu=500m`` are stored in the PodManifest in canonical form: the
largest suffix that keeps an integer mantissa (``1000M`` -> ``1G``, ``0.5`` -> ``500m``,
``1024Mi`` -> ``1Gi``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_SYNTAX = re.compile(r"^([+-]?[0-9]*\.?[0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")


class QuantityError(ValueError):
    pass


def parse(text: str) -> tuple[Fraction, str]:
    """Return the exact value and its format: ``"binary"`` or ``"decimal"``."""
    match = _SYNTAX.match(text.strip())
    if not match or match.group(1) in ("", "+", "-", "."):
        raise QuantityError(
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    number = Fraction(match.group(1))
    suffix = match.group(2) or ""
    if suffix in _BINARY:
        return number * (2 ** _BINARY[suffix]), "binary"
    if suffix[:1] in ("e", "E"):
        return number * Fraction(10) ** int(suffix[1:]), "decimal"
    return number * Fraction(10) ** _DECIMAL[suffix], "decimal"


def canonical(text: str) -> str:
    value, fmt = parse(text)
    if fmt == "binary" and value.denominator == 1 and abs(value) >= 1024:
        integer = int(value)
        power = 0
        while power < 60 and integer % (2 ** (power + 10)) == 0:
            power += 10
        suffix = {v: k for k, v in _BINARY.items()}.get(power, "")
        return f"{integer // 2**power}{suffix}"
    # decimal: round up to nano precision, then the largest exponent keeping an integer
    nanos = math.ceil(value * 10**9)
    if nanos == 0:
        return "0"
    exponent = -9
    while exponent < 18 and nanos % 10 ** (exponent + 9 + 3) == 0:
        exponent += 3
    suffix = {v: k for k, v in _DECIMAL.items()}[exponent]
    return f"{nanos // 10 ** (exponent + 9)}{suffix}"


def value_int(text: str) -> int:
    """The value rounded up to an integer (``Quantity.Value()``)."""
    value, _ = parse(text)
    return math.ceil(value)
