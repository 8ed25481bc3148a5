"""Kubernetes resource quantities (``128Mi``, ``1G``, ``500m``, ``0.5``, ``2``, ``1e3``).

Owns the grammar (one regular expression, shared with the CRD schema) and the exact
conversion of a quantity to a rational number, plus the two roundings rkt-operator needs:
memory to whole megabytes and CPU to whole millicores, both rounded *up* so that rkt
never enforces less than what the task asked for. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# The serialisation grammar of k8s.io/apimachinery resource.Quantity: a signed decimal
# number followed by a binary suffix (Ki..Ei), a decimal suffix (n u m "" k M G T P E) or a
# decimal exponent (e3, E-2). RE2- and Python-compatible, used verbatim as the CRD pattern.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_NUMBER_RE = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$")

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

# Exponents beyond this are refused: they cannot be a sensible limit and would make the
# exact arithmetic below needlessly expensive (1e999999999 is a valid quantity string).
_MAX_EXPONENT = 30

MEGABYTE = 10**6  # rkt's ``M`` suffix is decimal (rkt-cli.md §3.4: quantity syntax)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity, or is out of the supported range."""


def parse_quantity(value: int | str) -> Fraction:
    """The exact value of a quantity (``"128Mi"`` -> 134217728, ``"500m"`` -> 1/2).

    Accepts an ``int`` (YAML ``cpu: 2``) or a string in the Kubernetes grammar.
    Raises ``QuantityError`` for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if len(value) > 64 or not _QUANTITY_RE.match(value):
        raise QuantityError(f"not a quantity: {value!r}")
    match = _NUMBER_RE.match(value)
    if match is None:  # pragma: no cover - the grammar above already guarantees a match
        raise QuantityError(f"not a quantity: {value!r}")
    sign, number, suffix = match.groups()
    magnitude = Fraction(number)
    if suffix in _BINARY:
        magnitude *= 1024 ** _BINARY[suffix]
    elif suffix in _DECIMAL:
        magnitude *= Fraction(10) ** _DECIMAL[suffix]
    else:  # exponent form: e3, E-2, e+1.5 is not valid (grammar allows a decimal exponent)
        exponent = Fraction(suffix[1:])
        if exponent.denominator != 1 or abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"unsupported exponent in quantity: {value!r}")
        magnitude *= Fraction(10) ** int(exponent)
    return -magnitude if sign == "-" else magnitude


def memory_megabytes(value: int | str) -> int:
    """Memory quantity -> whole megabytes (10^6 bytes) for ``--memory=<n>M``, rounded up."""
    return math.ceil(parse_quantity(value) / MEGABYTE)


def cpu_millicores(value: int | str) -> int:
    """CPU quantity (cores) -> whole millicores for ``--cpu=<n>m``, rounded up."""
    return math.ceil(parse_quantity(value) * 1000)
