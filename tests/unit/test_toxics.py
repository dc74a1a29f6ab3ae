"""The toxic catalog: attributes, defaults, units, streams, toxicity, names."""

from __future__ import annotations

import pytest

from pushctl.errors import UsageError
from pushctl.faults.toxics import KINDS, Stream, build_toxics, catalog_help, parse_attr_pairs, summarize


def test_latency_both_streams_is_two_named_toxics() -> None:
    up, down = build_toxics("latency", {"latency": 200}, stream=Stream.BOTH)
    assert (up.name, up.stream) == ("latency-up", "upstream")
    assert (down.name, down.stream) == ("latency-down", "downstream")
    assert up.attributes == down.attributes == {"latency": 200, "jitter": 0}
    assert up.type == "latency"
    assert up.toxicity == 1.0


def test_default_stream_is_down_and_name_is_used_as_base() -> None:
    (toxic,) = build_toxics("bandwidth", {"rate": "64"}, name="slow-uplink", toxicity=0.25)
    assert toxic.name == "slow-uplink-down"
    assert toxic.stream == "downstream"
    assert toxic.attributes == {"rate": 64}
    assert toxic.toxicity == 0.25


@pytest.mark.parametrize(
    ("kind", "attrs", "expected"),
    [
        ("timeout", {}, {"timeout": 0}),
        ("reset_peer", {"timeout": 500}, {"timeout": 500}),
        ("slow_close", {"delay": 100}, {"delay": 100}),
        ("slicer", {"average_size": 64}, {"average_size": 64, "size_variation": 0, "delay": 0}),
        ("limit_data", {"bytes": 0}, {"bytes": 0}),
    ],
)
def test_defaults_are_filled(kind: str, attrs: dict[str, object], expected: dict[str, int]) -> None:
    (toxic,) = build_toxics(kind, attrs)
    assert toxic.attributes == expected


def test_unknown_kind_lists_valid_kinds_on_one_line() -> None:
    with pytest.raises(UsageError) as info:
        build_toxics("lag", {})
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("unknown toxic kind 'lag'; valid kinds: ")
    assert all(k in msg for k in KINDS)
    assert info.value.exit_code == 2


def test_attribute_of_another_kind_lists_valid_attributes() -> None:
    msg = r"toxic latency has no attribute 'rate'; valid: latency \(ms, required\), jitter \(ms, default 0\)$"
    with pytest.raises(UsageError, match=msg):
        build_toxics("latency", {"latency": 10, "rate": 5})


@pytest.mark.parametrize(
    ("kind", "attrs", "match"),
    [
        ("latency", {}, "toxic latency needs latency"),
        ("bandwidth", {"rate": 0}, "rate must be at least 1 KB/s"),
        ("latency", {"latency": -1}, "must be at least 0 ms"),
        ("latency", {"latency": "fast"}, "must be a whole number of ms"),
        ("latency", {"latency": 1.5}, "must be a whole number"),
        ("latency", {"latency": True}, "must be a whole number"),
        ("slicer", {"average_size": 10, "size_variation": 10}, "size_variation must be smaller"),
        ("limit_data", {"bytes": 2**63}, "too large"),
    ],
)
def test_bad_attribute_values(kind: str, attrs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        build_toxics(kind, attrs)


@pytest.mark.parametrize("toxicity", [-0.1, 1.5, float("nan")])
def test_toxicity_is_a_share(toxicity: float) -> None:
    with pytest.raises(UsageError, match="toxicity must be between 0 and 1"):
        build_toxics("timeout", {}, toxicity=toxicity)


def test_bad_stream_and_name() -> None:
    with pytest.raises(UsageError, match="unknown stream 'sideways'; valid: up, down, both"):
        build_toxics("timeout", {}, stream="sideways")
    with pytest.raises(UsageError, match="toxic name 'a/b'"):
        build_toxics("timeout", {}, name="a/b")


def test_attr_pairs() -> None:
    assert parse_attr_pairs(["latency=200", " jitter = 5 "]) == {"latency": "200", "jitter": "5"}
    with pytest.raises(UsageError, match="--attr expects key=value, got 'latency'"):
        parse_attr_pairs(["latency"])
    with pytest.raises(UsageError, match="given twice"):
        parse_attr_pairs(["a=1", "a=2"])


def test_summary_and_help_say_units() -> None:
    (toxic,) = build_toxics("slicer", {"average_size": 64, "delay": 10}, stream="up", toxicity=0.5)
    assert summarize(toxic) == (
        "slicer-up: average_size 64 bytes, size_variation 0 bytes, delay 10 µs (up, 50% of connections)"
    )
    assert "delay (µs, default 0)" in catalog_help()
    assert "black hole" in catalog_help()


def test_summary_names_the_kind_when_the_name_does_not() -> None:
    (toxic,) = build_toxics("bandwidth", {"rate": 8}, name="edge")
    assert summarize(toxic) == "edge-down (bandwidth): rate 8 KB/s (down, all connections)"
