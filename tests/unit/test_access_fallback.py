"""The storage fallback decision: one failure switches, a streak of successes switches back."""

from __future__ import annotations

from pushstack.fallback import StorageHealth, carry_inline


def test_one_failure_switches_to_fallback_at_once() -> None:
    health = StorageHealth(now=0.0)
    assert health.observe(True, 0.2) is False
    assert health.observe(False, 0.4) is True
    assert health.state().mode == "fallback"
    assert health.state().since == 0.4


def test_switching_back_needs_consecutive_successes() -> None:
    health = StorageHealth(recover_after=2, now=0.0)
    health.observe(False, 1.0)
    assert health.observe(True, 1.2) is False
    assert health.observe(False, 1.4) is False  # flapping: the streak starts again
    assert health.observe(True, 1.6) is False
    assert health.observe(True, 1.8) is True
    assert health.mode == "redis"
    assert health.since == 1.8


def test_payloads_travel_inline_in_fallback_or_after_a_failed_write() -> None:
    assert carry_inline("redis", write_failed=False, inline_fallback=True) is False
    assert carry_inline("redis", write_failed=True, inline_fallback=True) is True
    assert carry_inline("fallback", write_failed=False, inline_fallback=True) is True


def test_inline_fallback_switched_off_always_sends_references() -> None:
    assert carry_inline("fallback", write_failed=True, inline_fallback=False) is False
