"""``NAMESPACE/NAME`` references to RktTasks, as the node-local commands take them."""

from __future__ import annotations

import re

from rkt_operator.model.fields import DNS1123_LABEL, DNS1123_SUBDOMAIN


def parse_task_ref(ref: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` -> (namespace, name); ``ValueError`` for anything else, including
    names Kubernetes would not accept (the namespace is a DNS label, the name a subdomain)."""
    namespace, sep, name = ref.partition("/")
    if (
        not sep
        or not re.fullmatch(DNS1123_LABEL, namespace)
        or len(namespace) > 63
        or not re.fullmatch(DNS1123_SUBDOMAIN, name)
        or len(name) > 253
    ):
        raise ValueError(f"expected NAMESPACE/NAME, got {ref!r}")
    return namespace, name
