"""An action's own checks turn a held SLO into a failed drill when the platform did not recover."""

from __future__ import annotations

from pushctl.actions.redis import FailRedis
from pushctl.contract.topology import load_inventory


def test_fail_redis_fails_when_storage_stays_on_the_fallback() -> None:
    action = FailRedis(load_inventory(None), "down")
    [(ok, text)] = action.checks({"storage_recovered_s": None})
    assert ok is False
    assert "still on the fallback" in text


def test_fail_redis_passes_when_payloads_are_back_in_redis() -> None:
    action = FailRedis(load_inventory(None), "down")
    assert action.checks({"storage_recovered_s": 0.3}) == [(True, "payloads back in Redis after the rollback")]


def test_fail_redis_held_has_nothing_to_check_yet() -> None:
    assert FailRedis(load_inventory(None), "down").checks({}) == []  # --hold: Redis is failed on purpose
