"""Host volumes of an RktTask (``spec.volumes``): host directories bind-mounted into the
app. Whether a node allows them, and which host paths, is decided at translation time."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from rkt_operator.model import fields as f
from rkt_operator.model.fields import KubeModel as _Model

RESERVED_MOUNT_PATHS = ("/alloc", "/local", "/secrets")

_PATH_RULE = f.cel(
    "!self.matches('" + f.DOT_SEGMENT + "')",
    "spec.volumes[]: hostPath and mountPath must not contain '.' or '..' segments",
)
HostPath = Annotated[
    str,
    f.Text(f.ABS_PATH, "an absolute, normalised path without ','", 4096, rules=(_PATH_RULE,)),
    AfterValidator(f.no_dot_segments),
]
MountPath = HostPath


class VolumeSpec(_Model):
    """A host directory bind-mounted into the app (gated per node by the agent settings)."""

    name: Annotated[str, f.Text(f.DNS1123_LABEL, "a valid volume name (RFC 1123 label)", 63)] = (
        Field(description="Unique name of this volume within the task.")
    )
    host_path: HostPath = Field(
        description="Absolute host path. The node's agent may restrict host paths to a list of "
        "allowed prefixes, or refuse volumes altogether."
    )
    mount_path: MountPath = Field(
        description="Absolute path inside the app. /alloc, /local and /secrets are reserved "
        "for the task directories.",
        json_schema_extra={
            "x-kubernetes-validations": [
                f.cel(
                    "!(self in ['/alloc', '/local', '/secrets'])",
                    "spec.volumes[].mountPath must not be /alloc, /local or /secrets "
                    "(reserved for the task directories)",
                )
            ]
        },
    )
    read_only: bool = Field(False, description="Mount read-only (rkt readOnly=true).")

    @field_validator("mount_path")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_MOUNT_PATHS:  # the path pattern already requires normal form
            raise ValueError(f"mountPath {value} is reserved for the task directories")
        return value
