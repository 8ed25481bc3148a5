"""Compute resources of an RktTask (``spec.resources.limits``) as Kubernetes quantities,
translated to rkt's ``--memory=<n>M`` and ``--cpu=<n>m``."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic.config import JsonDict

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


def _quantity_schema(field: str, maximum: str, kind: str = "limits") -> f.SchemaExtra:
    return f.SchemaExtra(
        {
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                f.cel(
                    "isQuantity(string(self))"
                    " && quantity(string(self)).isGreaterThan(quantity('0'))"
                    f" && !quantity(string(self)).isGreaterThan(quantity('{maximum}'))",
                    f"spec.resources.{kind}.{field} must be a quantity above 0 and at most "
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


RequestMemory = Annotated[
    StrictInt | StrictStr,
    _quantity_check("memory", MAX_MEMORY),
    _int_or_string("memory"),
    _quantity_schema("memory", MAX_MEMORY, "requests"),
]
RequestCpu = Annotated[
    StrictInt | StrictStr,
    _quantity_check("cpu", MAX_CPU),
    _int_or_string("cpu"),
    _quantity_schema("cpu", MAX_CPU, "requests"),
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


class ResourceRequests(_Model):
    """What the binder reserves on a node for the task (as a Pod's requests)."""

    memory: RequestMemory | None = Field(
        None,
        description="Memory the node must have free for this task (quantity). Default: the "
        "memory limit, as for Pods. At most the memory limit in force (default "
        f"{DEFAULT_MEMORY}).",
    )
    cpu: RequestCpu | None = Field(
        None,
        description="CPU (cores) the node must have free for this task (quantity). Default: "
        f"the cpu limit, as for Pods. At most the cpu limit in force (default {DEFAULT_CPU}).",
    )


def _request_rule(field: str, default: str) -> JsonDict:
    request = f"quantity(string(self.requests.{field}))"
    limit = (
        f"quantity(has(self.limits) && has(self.limits.{field})"
        f" ? string(self.limits.{field}) : '{default}')"
    )
    return f.cel(
        f"!has(self.requests) || !has(self.requests.{field})"
        f" || !isQuantity(string(self.requests.{field}))"
        f" || (has(self.limits) && has(self.limits.{field})"
        f" && !isQuantity(string(self.limits.{field})))"
        f" || !{request}.isGreaterThan({limit})",
        f"spec.resources.requests.{field} must not exceed the {field} limit "
        f"(spec.resources.limits.{field}, default {default})",
        field_path=f".requests.{field}",
    )


class Resources(_Model):
    """Compute resources of the app: rkt enforces the limits; the binder places the task
    where its requests (the limits when no requests are given) fit."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _request_rule("memory", DEFAULT_MEMORY),
                _request_rule("cpu", DEFAULT_CPU),
            ]
        }
    )

    limits: ResourceLimits | None = Field(None, description="Hard limits (memory, cpu).")
    requests: ResourceRequests | None = Field(
        None,
        description="Reserved amounts used for placement (memory, cpu); each defaults to "
        "the limit in force.",
    )

    def effective_limit(self, field: str) -> int | str:
        """The limit rkt enforces for ``memory`` or ``cpu`` (the default when unset)."""
        value = getattr(self.limits, field, None) if self.limits else None
        if value is None:
            return DEFAULT_MEMORY if field == "memory" else DEFAULT_CPU
        return value  # type: ignore[no-any-return]

    def effective_request(self, field: str) -> int | str:
        """What the binder reserves for ``memory`` or ``cpu``: the request, else the limit."""
        value = getattr(self.requests, field, None) if self.requests else None
        return self.effective_limit(field) if value is None else value

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for field in ("memory", "cpu"):
            if self.requests is None or getattr(self.requests, field) is None:
                continue
            limit = self.effective_limit(field)
            if parse_quantity(self.effective_request(field)) > parse_quantity(limit):
                default = DEFAULT_MEMORY if field == "memory" else DEFAULT_CPU
                raise ValueError(
                    f"requests.{field} must not exceed the {field} limit "
                    f"(limits.{field}, default {default})"
                )
        return self
