"""Networking parts of an RktTask spec: ports (Nomad's port_map), DNS servers and search
domains, and the networks of rkt's ``--net``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from rkt_operator.model import fields as f
from rkt_operator.model.fields import KubeModel as _Model

Protocol = Literal["TCP", "UDP"]
DNS_SPECIAL = ("host", "none")
NET_SPECIAL = ("host", "none")


def _dns_server(value: str) -> str:
    if value not in DNS_SPECIAL:
        try:
            f.parse_ip(value)
        except ValueError:
            # Nomad's exact text (E10), raised here at apply time instead of at start.
            raise ValueError(f'invalid ip address for container dns server "{value}"') from None
    return value


DnsServer = Annotated[
    str,
    f.Text(
        None,
        "",
        45,
        rules=(
            f.cel(
                "self == 'host' || self == 'none' || isIP(self)",
                "spec.dnsServers: invalid ip address for container dns server"
                " (each entry is an IP address, or host or none alone)",
            ),
        ),
    ),
    AfterValidator(_dns_server),
]


def _ipv4(value: str) -> str:
    f.parse_ip(value, v4_only=True)
    return value


HostIP = Annotated[
    str,
    f.Text(
        None,
        "",
        15,
        rules=(
            f.cel(
                "isIP(self) && ip(self).family() == 4",
                "spec.ports[].hostIP must be an IPv4 address (rkt's --port=NAME:IP:PORT"
                " syntax cannot carry IPv6)",
            ),
        ),
    ),
    AfterValidator(_ipv4),
]


Network = Annotated[
    str,
    f.Text(
        f.NETWORK,
        "a network name, optionally with CNI args (name:K=V;K2=V2), without ','",
        253,
        rules=(
            f.cel(
                "!self.matches('^(host|all|none):')",
                "spec.net: host, all and none take no arguments",
            ),
        ),
    ),
]
Domain = Annotated[str, f.Text(f.DNS_DOMAIN, "a DNS domain", 253)]


class PortSpec(_Model):
    """A port declared by the image, and optionally its mapping to a host port."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                f.cel(
                    "!has(self.hostIP) || has(self.hostPort)",
                    "spec.ports[].hostIP requires spec.ports[].hostPort",
                    field_path=".hostIP",
                )
            ]
        }
    )

    name: f.PortName = Field(
        description="Name of the port in the image manifest (docker images: '<port>-tcp'). "
        "The container port reported in status.portMap is read from the manifest."
    )
    host_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Host port forwarded to this port (rkt --port). Ignored with net: [host]. "
        "Without it the port is only reported in status.portMap.",
    )
    protocol: Protocol = Field(
        "TCP",
        description="TCP or UDP. rkt takes the protocol from the image manifest; this value "
        "is reported in status.ports and keeps host-port bindings apart.",
    )
    host_ip: HostIP | None = Field(
        None,
        alias="hostIP",
        description="Host IPv4 address to bind the host port to (rkt --port=NAME:IP:PORT); "
        "all addresses when unset.",
    )

    @model_validator(mode="after")
    def _ip_needs_port(self) -> PortSpec:
        if self.host_ip is not None and self.host_port is None:
            raise ValueError(f"port {self.name}: hostIP requires hostPort")
        return self
