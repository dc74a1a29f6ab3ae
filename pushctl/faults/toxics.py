"""The toxic kinds pushctl can put on a link: attributes, units, defaults and validation.

Toxiproxy silently ignores an attribute it does not know (`{"ratex": 5}` becomes `rate: 0`,
a bandwidth toxic that stalls the link), so everything is checked here, before any call.

    build_toxics("latency", {"latency": 200}, stream=Stream.BOTH)
    # (Toxic(name='latency-up', type='latency', stream='upstream', ...),
    #  Toxic(name='latency-down', type='latency', stream='downstream', ...))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pushctl.errors import UsageError
from pushctl.faults.toxiproxy import StreamName, Toxic, ToxicState

TOXIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")


class Stream(StrEnum):
    """Which direction a toxic acts on; `both` adds one toxic per direction."""

    UP = "up"  # client -> upstream server
    DOWN = "down"  # upstream server -> client (Toxiproxy's default)
    BOTH = "both"

    @property
    def wire(self) -> tuple[StreamName, ...]:
        if self is Stream.UP:
            return ("upstream",)
        if self is Stream.DOWN:
            return ("downstream",)
        return ("upstream", "downstream")


SUFFIX: dict[str, str] = {"upstream": "up", "downstream": "down"}


@dataclass(frozen=True)
class Attr:
    """One attribute of a toxic kind; `default=None` means the user must give it."""

    name: str
    unit: str
    help: str
    default: int | None = None
    minimum: int = 0

    def describe(self) -> str:
        need = "required" if self.default is None else f"default {self.default}"
        return f"{self.name} ({self.unit}, {need})"


@dataclass(frozen=True)
class ToxicKind:
    """A Toxiproxy toxic type and what its attributes mean."""

    name: str
    help: str
    attrs: tuple[Attr, ...]

    def attr(self, name: str) -> Attr:
        for attr in self.attrs:
            if attr.name == name:
                return attr
        valid = ", ".join(a.describe() for a in self.attrs)
        raise UsageError(f"toxic {self.name} has no attribute {name!r}; valid: {valid}")

    def resolve(self, given: Mapping[str, object]) -> dict[str, int]:
        """The full attribute set: `given` checked and converted, defaults filled in."""
        values = {name: _whole(self, self.attr(name), value) for name, value in given.items()}
        for attr in self.attrs:
            if attr.name not in values:
                if attr.default is None:
                    raise UsageError(f"toxic {self.name} needs {attr.name} ({attr.unit}): {attr.help}")
                values[attr.name] = attr.default
        if self.name == "slicer" and values["size_variation"] >= values["average_size"]:
            raise UsageError("toxic slicer: size_variation must be smaller than average_size")
        return {a.name: values[a.name] for a in self.attrs}


KINDS: dict[str, ToxicKind] = {
    k.name: k
    for k in (
        ToxicKind(
            "latency",
            "delays data; one stream is one direction (--stream both: round trip + 2x latency)",
            (
                Attr("latency", "ms", "delay added to the data"),
                Attr("jitter", "ms", "random +/- variation of the delay", default=0),
            ),
        ),
        ToxicKind(
            "bandwidth",
            "limits throughput (to stop data altogether use timeout)",
            (Attr("rate", "KB/s", "the most data passed per second", minimum=1),),
        ),
        ToxicKind(
            "slow_close",
            "delays the TCP close after the upstream closes",
            (Attr("delay", "ms", "how long the close is held"),),
        ),
        ToxicKind(
            "timeout",
            "stops data, closes after timeout ms; 0 = black hole until removed",
            (Attr("timeout", "ms", "when to close the connection; 0 = never", default=0),),
        ),
        ToxicKind(
            "reset_peer",
            "TCP RST after timeout ms (a real RST only on connections opened after it)",
            (Attr("timeout", "ms", "when to reset; 0 = at once", default=0),),
        ),
        ToxicKind(
            "slicer",
            "slices data into small chunks with a delay between them",
            (
                Attr("average_size", "bytes", "average chunk size", minimum=1),
                Attr("size_variation", "bytes", "random variation of the chunk size", default=0),
                Attr("delay", "µs", "pause between chunks (microseconds)", default=0),
            ),
        ),
        ToxicKind(
            "limit_data",
            "closes the connection once that many bytes have passed on the stream",
            (Attr("bytes", "bytes", "how much data may pass"),),
        ),
    )
}


def kind(name: str) -> ToxicKind:
    """The toxic kind called `name`; a one-line `UsageError` listing the valid ones if none."""
    try:
        return KINDS[name]
    except KeyError:
        raise UsageError(f"unknown toxic kind {name!r}; valid kinds: {', '.join(KINDS)}") from None


def build_toxics(
    kind_name: str,
    attrs: Mapping[str, object],
    *,
    stream: Stream | str = Stream.DOWN,
    toxicity: float = 1.0,
    name: str | None = None,
) -> tuple[Toxic, ...]:
    """The toxics for one fault: one per direction, named `<name>-up` / `<name>-down`.

    `name` defaults to the kind. `toxicity` is the share of *connections* that get the toxic,
    decided once per connection, not per packet.
    """
    spec = kind(kind_name)
    values = spec.resolve(attrs)
    direction = _stream(stream)
    if isinstance(toxicity, bool) or not isinstance(toxicity, int | float) or not 0.0 <= toxicity <= 1.0:
        raise UsageError(f"toxicity must be between 0 and 1 (a share of connections), got {toxicity!r}")
    base = spec.name if name is None else name
    if not TOXIC_NAME.match(base):
        raise UsageError(
            f"toxic name {base!r} must be 1-48 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return tuple(
        Toxic(
            name=f"{base}-{SUFFIX[wire]}",
            type=spec.name,
            stream=wire,
            toxicity=float(toxicity),
            attributes=values,
        )
        for wire in direction.wire
    )


def parse_attr_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """`["latency=200", "jitter=20"]` -> `{"latency": "200", "jitter": "20"}`."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UsageError(f"--attr expects key=value, got {pair!r}")
        if key in out:
            raise UsageError(f"attribute {key!r} given twice")
        out[key] = value
    return out


def summarize(toxic: Toxic | ToxicState) -> str:
    """One line for people: `latency-down: latency 200 ms, jitter 0 ms (down, all connections)`."""
    spec = KINDS.get(toxic.type)
    units = {a.name: a.unit for a in spec.attrs} if spec else {}
    order = list(units)
    items = sorted(toxic.attributes.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    attrs = ", ".join(f"{k} {v} {units.get(k, '')}".rstrip() for k, v in items)
    share = "all connections" if toxic.toxicity >= 1 else f"{toxic.toxicity * 100:g}% of connections"
    label = toxic.name if toxic.name.startswith(toxic.type) else f"{toxic.name} ({toxic.type})"
    return f"{label}: {attrs} ({SUFFIX.get(toxic.stream, toxic.stream)}, {share})"


def catalog_help() -> str:
    """The kinds and their attributes, for `pushctl fault add --help`."""
    return "\n".join(
        f"{k.name:<11} {', '.join(a.describe() for a in k.attrs)}\n{'':<11} {k.help}" for k in KINDS.values()
    )


def _stream(value: Stream | str) -> Stream:
    try:
        return Stream(value)
    except ValueError:
        raise UsageError(f"unknown stream {value!r}; valid: {', '.join(s.value for s in Stream)}") from None


def _whole(spec: ToxicKind, attr: Attr, value: object) -> int:
    """`value` as a whole number within the attribute's bounds."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise UsageError(f"{spec.name}.{attr.name} must be a whole number of {attr.unit}, got {value!r}")
    if number < attr.minimum:
        raise UsageError(f"{spec.name}.{attr.name} must be at least {attr.minimum} {attr.unit}, got {number}")
    if number > 2**63 - 1:
        raise UsageError(f"{spec.name}.{attr.name} is too large: {number}")
    return number
