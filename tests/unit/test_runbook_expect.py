"""The `# expect:` grammar: parsing, JSON paths, operators, and the errors a runbook author sees."""

from __future__ import annotations

import pytest

from pushctl.runbooks.expect import ExpectSyntaxError, parse_expect, resolve

STATUS = {
    "policies": [{"region": "south", "origin": "auto", "kind": "drain"}],
    "regions": {"north": {"healthy": True}, "south": {"healthy": False}},
    "connections": {"north": {"count": 3}, "south": None},
    "storage": {"mode": "fallback"},
    "during": {"lost": 0, "delivery_rate": 99.95},
    "components": [{"name": "logic-idc1", "healthy": False}, {"name": "logic-idc2", "healthy": True}],
    "actions": [],
}


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ('storage.mode == "fallback"', True),
        ('storage.mode == "redis"', False),
        ("during.lost == 0", True),
        ("during.delivery_rate >= 99.9", True),
        ("during.delivery_rate < 99.9", False),
        ('policies.*.region contains "south"', True),
        ('policies.*.region not contains "south"', False),
        ('policies[region=south].origin == "auto"', True),
        ('policies.0.kind in ["drain", "block"]', True),
        ('policies.-1.kind not in ["drain"]', False),
        ("connections.south == null", True),
        ("connections.north != null", True),
        ("regions.*.healthy contains false", True),
        ("components[name=logic-idc1].healthy == false", True),
        ("actions == []", True),
    ],
)
def test_path_expectations_read_the_json(text: str, held: bool) -> None:
    ok, found = parse_expect(text).check(0, STATUS)
    assert ok is held, found


def test_exit_expectation_reads_the_exit_code_only() -> None:
    expect = parse_expect("exit 5")
    assert expect.exit_code == 5 and expect.path is None
    assert expect.check(5, None) == (True, "exit 5")
    assert expect.check(0, None)[0] is False


def test_within_is_parsed_into_seconds() -> None:
    expect = parse_expect("policies == [] within 20s")
    assert expect.within == 20.0 and expect.value == []


def test_missing_key_fails_and_names_what_there_was() -> None:
    ok, found = parse_expect('storage.mdoe == "redis"').check(0, STATUS)
    assert not ok
    assert "'mdoe'" in found and "mode" in found


def test_no_json_output_fails_a_path_expectation() -> None:
    ok, found = parse_expect("passed == true").check(1, None)
    assert not ok and "no JSON" in found


def test_ordering_needs_numbers_at_runtime() -> None:
    ok, _ = parse_expect("storage.mode >= 1").check(0, STATUS)
    assert not ok


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("storage.mode == fallback", "not a JSON value"),
        ("storage.mode is fallback", "cannot read"),
        ('during.lost >= "x"', "needs a number"),
        ('policies.*.region in "south"', "needs a list"),
        ("exit 0 within 5s", "within"),
        ("policies == [] within soon", "invalid within"),
        ("a..b == 1", "empty segment"),
    ],
)
def test_bad_expectations_are_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ExpectSyntaxError, match=message):
        parse_expect(text)


def test_star_over_an_object_yields_its_values() -> None:
    assert sorted(resolve(STATUS, "regions.*.healthy")) == [False, True]
