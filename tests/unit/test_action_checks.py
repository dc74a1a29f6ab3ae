"""An action's own checks turn a held SLO into a failed drill when the platform did not do its part.

Each verified claim of a plan is shown failing on measurements of a broken platform.
"""

from __future__ import annotations

from pushctl.actions.base import Outcome
from pushctl.actions.capacity import LimitRegion, over_limit
from pushctl.actions.drain import Drain, Restore, spread_outcomes
from pushctl.actions.idc import FailIdc, SwitchIdc, share_outcomes
from pushctl.actions.redis import FailRedis
from pushctl.actions.region import FailRegion
from pushctl.actions.throttle import ThrottleAccess
from pushctl.contract.topology import load_inventory

INV = load_inventory(None)
DISPATCHER_OK = {"north": ["north", "east"], "east": ["east", "north"], "south": ["east", "north"]}


def failed(outcomes: list[Outcome]) -> list[str]:
    return [o.text for o in outcomes if not o.ok]


def test_fail_redis_fails_when_storage_stays_on_the_fallback() -> None:
    action = FailRedis(INV, "down")
    texts = failed(action.checks({"fallback_detected_s": 0.3, "storage_recovered_s": None}))
    assert texts == ["storage still on the fallback 20s after rollback"]


def test_fail_redis_fails_when_the_fallback_never_engaged() -> None:
    texts = failed(FailRedis(INV, "down").checks({"fallback_detected_s": None, "storage_recovered_s": 0.2}))
    assert texts == ["the access tier never switched to fallback storage while Redis was down"]


def test_fail_redis_passes_when_payloads_are_back_in_redis() -> None:
    outcomes = FailRedis(INV, "down").checks({"fallback_detected_s": 0.3, "storage_recovered_s": 0.3})
    assert all(o.ok for o in outcomes)
    assert [o.timing for o in outcomes] == [False, True, False]  # "within 1 s" is a claim about time


def test_fail_redis_held_checks_only_the_switch() -> None:  # --hold: Redis is failed on purpose
    assert [o.text for o in FailRedis(INV, "down").checks({"fallback_detected_s": 0.2})] == [
        "the access tier switched to fallback storage (0.2s after the fault)",
        "fallback storage within 1 s of the fault (0.2s)",
    ]


def test_a_drain_that_never_empties_the_region_fails() -> None:
    m = {"drained": False, "devices_left": 12, "dispatcher": DISPATCHER_OK}
    assert failed(Drain(INV, "south", spread_s=2).checks(m)) == ["drain did not empty south: 12 devices left after 22s"]


def test_a_drain_fails_when_the_dispatcher_hands_out_the_drained_region() -> None:
    handed = {**DISPATCHER_OK, "north": ["north", "south", "east"]}
    texts = failed(Drain(INV, "south").checks({"drained": True, "dispatcher": handed}))
    assert texts and "handed out drained south" in texts[0] and "north" in texts[0]
    # the probe's joining devices saw it even when the direct ask did not
    seen = {"drained": True, "dispatcher": DISPATCHER_OK, "probe_dispatcher_answers": 9, "probe_offered_drained": 2}
    assert "2 of 9" in failed(Drain(INV, "south").checks(seen))[0]


def test_a_drain_fails_when_the_dispatcher_does_not_answer() -> None:
    assert failed(Drain(INV, "south").checks({"drained": True, "dispatcher": None})) == [
        "the dispatcher did not answer"
    ]


def test_reconnect_orders_bunched_at_the_start_fail_the_spread_check() -> None:
    bunched = {"orders": 30, "planned_span_s": 0.05, "connected_span_s": 0.4, "connected_peak_per_100ms": 14}
    outcomes = spread_outcomes(bunched, 3.0)
    assert [o.ok for o in outcomes] == [False, False]
    assert "not spread: 30 devices told to move within 0.05s" in outcomes[0].text
    assert not outcomes[0].timing and outcomes[1].timing  # the slots are the platform's; the storm is timing
    even = {"orders": 30, "planned_span_s": 2.9, "connected_span_s": 3.0, "connected_peak_per_100ms": 3}
    assert all(o.ok for o in spread_outcomes(even, 3.0))
    assert spread_outcomes({"orders": 3, "planned_span_s": 0.0}, 3.0) == []  # too few to judge


def test_restore_fails_while_the_dispatcher_still_leaves_the_region_out() -> None:
    texts = failed(Restore(INV, "south").checks({"dispatcher": DISPATCHER_OK}))
    assert texts == ["the dispatcher still leaves south out for devices of east, north, south"]


def test_fail_region_fails_when_the_scheduler_never_detects_it() -> None:
    action = FailRegion(INV, "south", "link-down", duration_s=8)
    texts = failed(action.checks({"scheduler_detected_s": None, "auto_drain_withdrawn_s": 3.0}))
    assert texts == ["the scheduler never detected the failure: no drain of south within 8s"]
    texts = failed(action.checks({"scheduler_detected_s": 3.1, "auto_drain_withdrawn_s": None}))
    assert texts == ["the auto drain of south was never withdrawn after recovery"]


def test_switch_idc_fails_on_a_gateway_with_stale_weights() -> None:
    action = SwitchIdc(INV, {"idc1": 0.0, "idc2": 100.0})
    m = {
        "weights_by_gateway": {"logic-idc1": {"idc1": 0.0, "idc2": 100.0}, "logic-idc2": {"idc1": 50.0, "idc2": 50.0}},
        "acked_by_idc": {"idc1": 0.0, "idc2": 600.0},
    }
    assert failed(action.checks(m)) == ["stale routing weights: logic-idc2 still answers {'idc1': 50.0, 'idc2': 50.0}"]


def test_deliveries_that_ignore_the_weights_fail_the_share_check() -> None:
    outcomes = share_outcomes({"idc1": 300.0, "idc2": 300.0}, {"idc1": 0.0, "idc2": 100.0})
    assert [o.ok for o in outcomes] == [False, False]
    assert "idc1 delivered 50% of 600 pushes against a weight of 0%" in outcomes[0].text
    assert all(o.ok for o in share_outcomes({"idc1": 3.0, "idc2": 597.0}, {"idc1": 0.0, "idc2": 100.0}))
    assert all(o.timing for o in outcomes)  # counted over a window: a stale gateway is the hard check
    assert share_outcomes({"idc1": 1.0, "idc2": 2.0}, {"idc1": 0.0, "idc2": 100.0}) == []  # too few


def test_fail_idc_fails_when_the_surviving_idc_does_not_deliver() -> None:
    action = FailIdc(INV, "idc1", duration_s=8)
    texts = failed(action.checks({"probe_sent": 800, "survivors_acked": {"idc2": 12.0}}))
    assert texts == [
        "idc2 delivered only 12 of 800 pushes while idc1 was dark: the surviving IDC cannot carry the traffic"
    ]
    assert not failed(action.checks({"probe_sent": 800, "survivors_acked": {"idc2": 790.0}}))


def test_fail_idc_takes_down_what_lives_in_the_idc() -> None:
    assert FailIdc(INV, "idc1").links == ["logic-idc1", "cache", "store", "diskkv"]  # not regions-store: no IDC
    assert FailIdc(INV, "idc2").links == ["logic-idc2", "cross-idc-store", "cross-idc-cache", "cross-idc-diskkv"]


def test_a_limit_admitting_connections_past_it_fails() -> None:
    action = LimitRegion(INV, "south", 20)
    low, past = over_limit([30, 15, 18, 30], 20)  # held 30 (allowed: set before), fell to 15, rose to 30
    assert (low, past) == (15, 10)
    texts = failed(action.checks({"admitted_past_limit": past, "lowest_connections": low, "peak_connections": 30}))
    assert texts and "admitted 10 connections past its limit of 20" in texts[0]
    assert over_limit([30, 29, 15, 20, 20], 20) == (15, 0)  # refusing what does not fit: fine


def test_throttle_fails_when_pushes_were_rejected_or_the_buffer_never_drained() -> None:
    action = ThrottleAccess(limit=100, auto=False)
    assert failed(action.checks({"rejected": 3.0, "buffer_drained_s": None})) == [
        "the access tier rejected 3 pushes",
        "the Kafka buffer never drained (60 s after the throttle)",
    ]
    assert failed(action.checks({"rejected": None, "buffer_drained_s": 1.0})) == [
        "could not read the access tier's counters"
    ]
