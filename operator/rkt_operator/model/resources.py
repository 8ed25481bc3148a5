"""Compute resources of an RktTask (``spec.resources.limits``) as Kubernetes quantities,
translated to rkt's ``--memory=<n>M`` and ``--cpu=<n>m``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, StrictStr

from rkt_operator.model import fields as f
from rkt_operator.model.fields import KubeModel as _Model
from rkt_operator.model.quantity import QUANTITY_PATTERN, QuantityError, parse_quantity

DEFAULT_MEMORY = "300M"  # Nomad's default task memory (300 MB) -> --memory=300M
DEFAULT_CPU = "100m"  # Nomad's default task CPU (100 MHz) -> --cpu=100m
MAX_MEMORY = "1Ei"
MAX_CPU = "1M"  # one million cores: a sanity bound, keeps millicores in an int64


def _quantity_check(field: str, maximum: str) -> AfterValidator:
    def check(value: int | str) -> int | str:
        try:
            amount = parse_quantity(value)
        except QuantityError as exc:
            raise ValueError(f"{field}: {exc}") from None
        if amount <= 0 or amount > parse_quantity(maximum):
            raise ValueError(f"{field} must be a quantity above 0 and at most {maximum}")
        return value

    return AfterValidator(check)


def _quantity_schema(field: str, maximum: str) -> f.SchemaExtra:
    return f.SchemaExtra(
        {
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                f.cel(
                    "isQuantity(string(self))"
                    " && quantity(string(self)).isGreaterThan(quantity('0'))"
                    f" && !quantity(string(self)).isGreaterThan(quantity('{maximum}'))",
                    f"spec.resources.limits.{field} must be a quantity above 0 and at most "
                    f"{maximum}",
                )
            ],
        }
    )


def _int_or_string(field: str) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{field} must be an integer or a quantity string such as 128Mi")
        return value

    return BeforeValidator(check)


# Integers (YAML `cpu: 2`) or strings; floats are refused, as the CRD's int-or-string does.
MemoryQuantity = Annotated[
    StrictInt | StrictStr,
    _quantity_check("memory", MAX_MEMORY),
    _int_or_string("memory"),
    _quantity_schema("memory", MAX_MEMORY),
]
CpuQuantity = Annotated[
    StrictInt | StrictStr,
    _quantity_check("cpu", MAX_CPU),
    _int_or_string("cpu"),
    _quantity_schema("cpu", MAX_CPU),
]


class ResourceLimits(_Model):
    """Hard limits enforced by rkt's isolators."""

    memory: MemoryQuantity | None = Field(
        None,
        description="Memory limit as a Kubernetes quantity (128Mi, 1G...). Passed as "
        f"--memory=<n>M, n = bytes / 10^6 rounded up. Default {DEFAULT_MEMORY} (Nomad's).",
    )
    cpu: CpuQuantity | None = Field(
        None,
        description="CPU limit in cores as a Kubernetes quantity (500m, 0.5, 2). Passed as "
        "--cpu=<n>m (millicores, rounded up): a hard CFS quota. Nomad passed its MHz figure "
        f"as millicores. Default {DEFAULT_CPU} (Nomad's 100 MHz).",
    )


class Resources(_Model):
    """Compute resources of the app."""

    limits: ResourceLimits | None = Field(None, description="Hard limits (memory, cpu).")
