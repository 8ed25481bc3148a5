"""Environment variables of an RktTask (``spec.env``), shaped like a Pod's ``env``.

The model only describes where values come from; the agent resolves ``valueFrom``
(Secret, ConfigMap, field of the task) and hands the result to ``rkt.argv`` as
``ResolvedVar`` values.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from rkt_operator.model import fields as f
from rkt_operator.model.fields import KubeModel as _Model

EnvName = Annotated[
    str,
    f.Text(
        f.ENV_NAME,
        "a valid variable name (letters, digits, '_' and '.', not starting with a digit;"
        " '-' is refused because rkt rejects it, Nomad issue #2358)",
        256,
    ),
]


class SecretKeySelector(_Model):
    """Selects one key of a Secret in the RktTask's namespace."""

    name: f.ObjectName = Field(description="Name of the Secret (same namespace as the task).")
    key: Annotated[str, f.Text(f.DATA_KEY, "a valid data key", 253)] = Field(
        description="Key in the Secret's data."
    )
    optional: bool = Field(
        False,
        description="If true, a missing Secret or key leaves the variable unset instead of "
        "holding the task back until it exists.",
    )


class ConfigMapKeySelector(_Model):
    """Selects one key of a ConfigMap in the RktTask's namespace."""

    name: f.ObjectName = Field(description="Name of the ConfigMap (same namespace as the task).")
    key: Annotated[str, f.Text(f.DATA_KEY, "a valid data key", 253)] = Field(
        description="Key in the ConfigMap's data."
    )
    optional: bool = Field(
        False,
        description="If true, a missing ConfigMap or key leaves the variable unset instead "
        "of holding the task back until it exists.",
    )


class ObjectFieldSelector(_Model):
    """Selects a field of the RktTask itself."""

    field_path: Annotated[
        str,
        f.Text(
            f.FIELD_PATH,
            "a supported field path (metadata.name, metadata.namespace, metadata.uid, "
            "spec.nodeName, metadata.labels['k'], metadata.annotations['k'])",
            512,
        ),
    ] = Field(
        description="Field of this RktTask: metadata.name, metadata.namespace, metadata.uid, "
        "spec.nodeName, metadata.labels['<key>'] or metadata.annotations['<key>']."
    )


class EnvVarSource(_Model):
    """Where a variable's value comes from: exactly one of the three sources."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                f.cel(
                    "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0)"
                    " + (has(self.fieldRef) ? 1 : 0) == 1",
                    "spec.env[].valueFrom must set exactly one of secretKeyRef, "
                    "configMapKeyRef or fieldRef",
                )
            ]
        }
    )

    secret_key_ref: SecretKeySelector | None = Field(
        None,
        description="A key of a Secret. The value never appears on rkt's command line: it is "
        "handed over in a 0600 file (--set-env-file).",
    )
    config_map_key_ref: ConfigMapKeySelector | None = Field(
        None, description="A key of a ConfigMap."
    )
    field_ref: ObjectFieldSelector | None = Field(None, description="A field of this RktTask.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        chosen = [x for x in (self.secret_key_ref, self.config_map_key_ref, self.field_ref) if x]
        if len(chosen) != 1:
            raise ValueError(
                "valueFrom must set exactly one of secretKeyRef, configMapKeyRef or fieldRef"
            )
        return self


_Value = Annotated[str, f.Text(f.NO_NUL, "a string without NUL", 32768, min_length=0)]


class EnvVar(_Model):
    """One environment variable of the app (rkt --set-env), as in a Pod's env."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                f.cel(
                    "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                    "spec.env[].value must be empty when spec.env[].valueFrom is set",
                )
            ]
        }
    )

    name: EnvName = Field(
        description="Variable name: letters, digits, '_' and '.', not starting with a digit."
    )
    value: _Value | None = Field(
        None,
        description="Literal value. $(OTHER) references are not expanded here (only in args).",
    )
    value_from: EnvVarSource | None = Field(
        None, description="Take the value from a Secret, a ConfigMap or a field of this task."
    )

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value_from is not None and self.value:
            raise ValueError(f"env {self.name}: value must be empty when valueFrom is set")
        return self
