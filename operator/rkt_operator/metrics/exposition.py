"""Prometheus text exposition format (version 0.0.4), just what the agent needs: metric
families of samples, labelled counters and histograms that accumulate in memory, and the
rendering with the format's escaping rules. Pure: no I/O, no clock."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MetricType = Literal["counter", "gauge", "histogram", "untyped"]
LabelValues = tuple[str, ...]

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Seconds; rkt commands range from a quick `status` to an image-fetching `prepare`.
DEFAULT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    return name


def _check_labels(names: Iterable[str]) -> tuple[str, ...]:
    out = tuple(names)
    for name in out:
        if not _LABEL_RE.match(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate label names {out!r}")
    return out


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (integers without a fraction, Go's infinities)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


@dataclass(frozen=True)
class Sample:
    """One line: ``<family name><suffix>{labels} value``."""

    labels: Mapping[str, str]
    value: float
    suffix: str = ""


@dataclass
class Family:
    """A metric family: one ``# HELP`` and ``# TYPE`` header and its samples."""

    name: str
    help: str
    type: MetricType
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_name(self.name)

    def add(self, value: float, suffix: str = "", **labels: str) -> Family:
        _check_labels(labels)
        self.samples.append(Sample(labels=labels, value=value, suffix=suffix))
        return self


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families`` (each name must appear once)."""
    lines: list[str] = []
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise ValueError(f"metric family {fam.name!r} rendered twice")
        seen.add(fam.name)
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for sample in fam.samples:
            name = fam.name + sample.suffix
            lines.append(f"{name}{_labels_text(sample.labels)} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


class Counter:
    """A monotonically increasing count per combination of label values."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = _check_name(name)
        self.help = help
        self.label_names = _check_labels(labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = _key(self.label_names, labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_key(self.label_names, labels), 0.0)

    def family(self) -> Family:
        fam = Family(self.name, self.help, "counter")
        for key, value in sorted(self._values.items()):
            fam.add(value, **dict(zip(self.label_names, key, strict=True)))
        return fam


@dataclass
class _Buckets:
    counts: list[int]
    total: float = 0.0
    count: int = 0


class Histogram:
    """Observations counted into cumulative ``le`` buckets, with their sum and count."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.name = _check_name(name)
        self.help = help
        self.label_names = _check_labels(labels)
        if "le" in self.label_names:
            raise ValueError("'le' is reserved for histogram buckets")
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError("histogram buckets must be distinct and not empty")
        self.bounds = tuple(bounds)
        self._series: dict[LabelValues, _Buckets] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = _key(self.label_names, labels)
        series = self._series.setdefault(key, _Buckets(counts=[0] * len(self.bounds)))
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                series.counts[index] += 1
        series.total += value
        series.count += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(_key(self.label_names, labels))
        return series.count if series else 0

    def family(self) -> Family:
        fam = Family(self.name, self.help, "histogram")
        for key, series in sorted(self._series.items()):
            labels = dict(zip(self.label_names, key, strict=True))
            for bound, cumulative in zip(self.bounds, series.counts, strict=True):
                fam.add(cumulative, "_bucket", **labels, le=format_value(bound))
            fam.add(series.count, "_bucket", **labels, le="+Inf")
            fam.add(series.total, "_sum", **labels)
            fam.add(series.count, "_count", **labels)
        return fam


def _key(names: tuple[str, ...], labels: Mapping[str, str]) -> LabelValues:
    if set(labels) != set(names):
        raise ValueError(f"expected labels {sorted(names)}, got {sorted(labels)}")
    return tuple(str(labels[n]) for n in names)
