"""Building blocks shared by the spec and status models: the regular expressions of the
names rkt and Kubernetes accept, constrained string types that carry their CRD schema, and
the CEL rule helper.

Every pattern here is written in the common subset of Python ``re`` and Go RE2 (no ``\\d``,
``\\s`` or look-arounds), is anchored, and is used verbatim both by the pydantic validator
(with ``re.fullmatch``) and as the ``pattern`` of the generated CRD, so the API server and
the agent accept exactly the same strings.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# Kubernetes object names (RFC 1123): node names, Secret and ConfigMap names.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# appc AC Name (rkt-cli.md §15.3): port names declared in image manifests, volume names.
AC_NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"
_AC_IDENTIFIER = r"[a-z0-9]+([-._~/][a-z0-9]+)*"
# An image as rkt understands it (rkt-cli.md §3.5): docker://, http(s)://, file:// URLs, an
# absolute path to an .aci file, or an appc name with an optional :version and ,labels.
# Relative paths are refused: they would depend on the agent's working directory.
_NO_SPACE = r"[^\x00-\x20\x7f]"
IMAGE = (
    rf"^(docker://{_NO_SPACE}+"
    rf"|https?://{_NO_SPACE}+"
    rf"|file:///{_NO_SPACE}+"
    rf"|/{_NO_SPACE}+"
    rf"|{_AC_IDENTIFIER}(:[A-Za-z0-9][-A-Za-z0-9._+~]*)?(,{_AC_IDENTIFIER}=[^,=\x00-\x20\x7f]+)*)$"
)
# Environment variable names: C identifiers, dots allowed. appc also allows '-', but rkt
# fails on such names (Nomad issue #2358) and no shell can reference them, so we refuse them.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_.]*$"
# Keys of Secret / ConfigMap data.
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# A host or container path: absolute, normalised (no empty segment, no trailing '/'), and
# without ',' which would end rkt's --volume/--mount key=value list. '.'/'..' segments are
# refused by DOT_SEGMENT below (RE2 has no look-ahead to say it in one pattern).
ABS_PATH = r"^(/[^/,\x00-\x1f\x7f]+)+$"
DOT_SEGMENT = r"/[.][.]?(/|$)"
# A network of rkt's --net list, optionally with CNI args: "default", "mynet:IP=10.1.0.5".
NETWORK = r"^[A-Za-z0-9][-A-Za-z0-9_.]*(:[^,\x00-\x20\x7f]+)?$"
# A DNS search domain (case-insensitive labels, optional trailing dot).
DNS_DOMAIN = (
    r"^[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?)*\.?$"
)
# A token without spaces or control characters (user, group, trust prefix).
TOKEN = rf"^{_NO_SPACE}+$"
# Any text but NUL, which no argv element can carry (args, env values).
NO_NUL = r"^[^\x00]*$"
# Printable text on one line (command): spaces allowed, control characters not.
LINE = r"^[^\x00-\x1f\x7f]+$"
# The fields of an RktTask that env[].valueFrom.fieldRef may name (resolved by the agent).
FIELD_PATH = (
    r"^(metadata\.(name|namespace|uid)|spec\.nodeName"
    r"|metadata\.(labels|annotations)\['[-A-Za-z0-9_./]+'\])$"
)
# metav1.Condition type and reason (kopf-and-gitops.md §6).
CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class KubeModel(BaseModel):
    """Base of the API models: camelCase aliases (snake_case accepted too), unknown fields
    refused, no type coercion, immutable once built."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,  # as the API server: "yes" is no boolean, "5" no integer
        frozen=True,
    )


def cel(rule: str, message: str, *, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry; ``message`` must name the field it checks."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


@dataclass(frozen=True, eq=False)
class SchemaExtra:
    """Annotated metadata that merges extra keys (pattern, CEL rules...) into the JSON schema
    of the annotated type, wherever it is used (field, list item, optional)."""

    extra: dict[str, Any]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.extra)
        return schema


@dataclass(frozen=True, eq=False)
class Text:
    """Annotated metadata for ``str`` fields: length bounds, an optional anchored pattern
    (checked with ``re.fullmatch``, error saying ``what`` was expected) and CEL ``rules``.
    Bounds, pattern and rules all land in the JSON schema, hence in the CRD."""

    pattern: str | None
    what: str
    max_length: int
    min_length: int = 1
    rules: tuple[JsonDict, ...] = ()

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        compiled = re.compile(self.pattern) if self.pattern is not None else None
        what = self.what

        def check(value: str) -> str:
            if compiled is not None and compiled.fullmatch(value) is None:
                raise ValueError(f"{value!r} is not {what}")
            return value

        return core_schema.no_info_after_validator_function(
            check,
            core_schema.str_schema(min_length=self.min_length, max_length=self.max_length),
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        result = handler(schema)
        if self.pattern is not None:
            result["pattern"] = self.pattern
        if self.rules:
            result["x-kubernetes-validations"] = [dict(rule) for rule in self.rules]
        return result


def no_dot_segments(value: str) -> str:
    """Refuse '.' and '..' path segments (they would let a path escape an allowlist)."""
    if re.search(DOT_SEGMENT, value):
        raise ValueError(f"{value!r} must not contain '.' or '..' segments")
    return value


def parse_ip(value: str, *, v4_only: bool = False) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP literal as the API server's CEL ``isIP`` accepts it: no zone, no IPv4-mapped
    IPv6, no leading zeros. Raises ``ValueError``."""
    if "%" in value:
        raise ValueError(f"{value!r} is not an IP address")
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError(f"{value!r} is an IPv4-mapped IPv6 address")
    if v4_only and not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"{value!r} is not an IPv4 address")
    return address


# Kubernetes-style names used in several models.
ObjectName = Annotated[
    str, Text(DNS1123_SUBDOMAIN, "a valid object name (RFC 1123 subdomain)", max_length=253)
]
PortName = Annotated[
    str, Text(AC_NAME, "a valid port name (appc AC Name: lowercase letters, digits, '-')", 63)
]
