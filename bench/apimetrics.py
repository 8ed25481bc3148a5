"""API write counting from kube-apiserver's own Prometheus ``/metrics`` text.

Owns one thing: turning two scrapes of ``apiserver_request_total`` (before and after a
benchmark phase) into the number of write requests per (verb, resource, subresource) in
between. The API server counts every request it served, whoever sent it, so a phase's
delta is exact as long as nothing else writes the counted resources at the same time
(the benchmark runs its phases one after the other for that reason).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Verbs that change state. The API server reports server-side apply as APPLY, not PATCH.
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})

_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, order=True)
class WriteKey:
    """One kind of write: ``PATCH rkttasks/status``, ``POST events``..."""

    verb: str
    resource: str
    subresource: str = ""

    def __str__(self) -> str:
        target = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {target}"


def parse_writes(text: str, resources: frozenset[str]) -> Counter[WriteKey]:
    """Sum ``apiserver_request_total`` write samples for ``resources`` (every group, code,
    scope and component), keyed by verb, resource and subresource."""
    counts: Counter[WriteKey] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        verb = labels.get("verb", "")
        resource = labels.get("resource", "")
        if verb not in WRITE_VERBS or resource not in resources:
            continue
        key = WriteKey(verb, resource, labels.get("subresource", ""))
        counts[key] += int(float(match["value"]))
    return counts


def write_delta(before: Counter[WriteKey], after: Counter[WriteKey]) -> dict[WriteKey, int]:
    """Writes that happened between two scrapes, zero entries dropped, sorted by key."""
    keys = sorted(set(before) | set(after))
    return {k: after[k] - before[k] for k in keys if after[k] - before[k]}
