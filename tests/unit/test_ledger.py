"""The delivery ledger: every classification, per region, per second, percentiles, JSON shape."""

from __future__ import annotations

import json
import math

import pytest

from pushctl.probe.ledger import Ledger, percentile

T0 = 1_000.0


def make(deadline: float = 1.0) -> Ledger:
    ledger = Ledger(deadline=deadline, t0=T0)
    for i in range(4):
        ledger.register(f"n{i}", "north")
        ledger.register(f"s{i}", "south")
    return ledger


def test_on_time_delivery_counts_and_rate() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 0.25)
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.sent, s.on_time, s.late, s.lost) == (1, 1, 0, 0)
    assert s.delivery_rate == 100.0
    assert s.latency_ms.p50 == 250.0


def test_delivery_exactly_at_deadline_is_on_time() -> None:
    ledger = make(deadline=0.5)
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 0.5)
    assert ledger.summary(cutoff=T0 + 10).on_time == 1


def test_late_delivery_is_late_not_lost() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 2.5)
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.on_time, s.late, s.lost) == (0, 1, 0)
    assert s.delivery_rate == 0.0
    assert s.latency_ms.p99 == 2500.0


def test_missing_delivery_is_lost_and_the_checker_says_so() -> None:
    """The checker shown to fail: one delivery removed on purpose is reported lost."""
    ledger = make()
    for i in range(4):
        ledger.sent(f"m{i}", T0 + i * 0.1, [f"n{i}"])
    for i in range(3):  # m3 never arrives
        ledger.delivered(f"m{i}", f"n{i}", T0 + i * 0.1 + 0.05)
    s = ledger.summary(cutoff=T0 + 10)
    assert s.lost == 1
    assert s.sent == 4 and s.on_time == 3
    assert s.delivery_rate == 75.0
    assert s.by_region["north"].lost == 1
    assert s.per_second[0].lost == 1


def test_delivery_after_the_cutoff_is_lost() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 7)
    s = ledger.summary(cutoff=T0 + 6)
    assert (s.late, s.lost) == (0, 1)
    assert ledger.summary(cutoff=T0 + 8).late == 1


def test_raw_duplicates_and_app_duplicates_are_counted_apart() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 0.1)
    ledger.delivered("m1", "n0", T0 + 0.2, app=False)  # caught by the device's de-duplication
    ledger.delivered("m1", "n0", T0 + 0.3, app=False)
    ledger.delivered("m1", "n0", T0 + 0.4, app=True)  # slipped through: an app-level duplicate
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.sent, s.on_time) == (1, 1)
    assert s.raw_duplicates == 3
    assert s.duplicates == 1
    assert s.by_region["north"].raw_duplicates == 3
    assert s.latency_ms.p50 == 100.0  # the first arrival counts, not the duplicates


def test_first_arrival_wins_even_when_recorded_out_of_order() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 3.0, app=False)
    ledger.delivered("m1", "n0", T0 + 0.2)
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.on_time, s.late, s.raw_duplicates, s.duplicates) == (1, 0, 1, 0)


def test_group_push_counts_one_expected_delivery_per_device() -> None:
    ledger = make()
    ledger.sent("g1", T0, ["n0", "n1", "s0", "s1"])
    ledger.delivered("g1", "n0", T0 + 0.1)
    ledger.delivered("g1", "n1", T0 + 0.1)
    ledger.delivered("g1", "s0", T0 + 1.5)
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.sent, s.on_time, s.late, s.lost) == (4, 2, 1, 1)
    assert s.by_region["north"].on_time == 2
    assert (s.by_region["south"].late, s.by_region["south"].lost) == (1, 1)
    assert s.by_region["south"].delivery_rate == 0.0


def test_open_region_group_adopts_devices_that_received_it() -> None:
    ledger = make()
    ledger.sent("g1", T0, ["n0", "n1"], open=True)
    ledger.delivered("g1", "n0", T0 + 0.1)
    ledger.delivered("g1", "n2", T0 + 0.1)  # seen in the region by the platform, not yet by the prober
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.sent, s.on_time, s.lost, s.unexpected) == (3, 2, 1, 0)


def test_deliveries_nobody_sent_are_unexpected_not_counted() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 0.1)
    ledger.delivered("m1", "n1", T0 + 0.1)  # wrong device
    ledger.delivered("zz", "n0", T0 + 0.1)  # unknown id
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.sent, s.on_time, s.unexpected) == (1, 1, 2)


def test_per_second_buckets_by_send_time_with_empty_seconds_kept() -> None:
    ledger = make()
    ledger.sent("a", T0 + 0.2, ["n0"])
    ledger.sent("b", T0 + 0.9, ["n1"])
    ledger.sent("c", T0 + 2.1, ["n2"])
    ledger.delivered("a", "n0", T0 + 0.3)
    ledger.delivered("b", "n1", T0 + 2.5)  # late, but filed under its send second
    s = ledger.summary(cutoff=T0 + 10)
    assert [x.to_json() for x in s.per_second] == [
        {"t": 0, "sent": 2, "on_time": 1, "late": 1, "lost": 0},
        {"t": 1, "sent": 0, "on_time": 0, "late": 0, "lost": 0},
        {"t": 2, "sent": 1, "on_time": 0, "late": 0, "lost": 1},
    ]
    assert [w.t for w in s.worst_seconds] == [2, 0]


def test_worst_seconds_are_at_most_five_and_worst_first() -> None:
    ledger = make()
    for t in range(8):
        for k in range(4):
            msg = f"m{t}-{k}"
            ledger.sent(msg, T0 + t, ["n0"])
            if k < t % 4 + (t >= 4):  # seconds deliver 0..4 of 4 on time
                ledger.delivered(msg, "n0", T0 + t + 0.1)
    s = ledger.summary(cutoff=T0 + 20)
    worst = s.worst_seconds
    assert len(worst) == 5
    rates = [w.on_time / w.sent for w in worst]
    assert rates == sorted(rates)
    assert worst[0].to_json()["t"] == 0


def test_no_worst_seconds_when_everything_was_on_time() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.delivered("m1", "n0", T0 + 0.1)
    assert ledger.summary(cutoff=T0 + 10).worst_seconds == ()


def test_window_restricts_to_messages_sent_in_it() -> None:
    ledger = make()
    for t in range(5):
        ledger.sent(f"m{t}", T0 + t + 0.5, ["n0"])
        if t != 2:
            ledger.delivered(f"m{t}", "n0", T0 + t + 0.6)
    during = ledger.summary(cutoff=T0 + 20, since=T0 + 2, until=T0 + 3)
    assert (during.sent, during.lost) == (1, 1)
    outside = ledger.summary(cutoff=T0 + 20, since=T0 + 3)
    assert (outside.sent, outside.lost, outside.on_time) == (2, 0, 2)


def test_nothing_sent_has_no_rate_and_no_latency() -> None:
    s = make().summary()
    assert s.sent == 0
    assert s.delivery_rate is None
    assert s.latency_ms.p50 is None
    assert s.per_second == ()


def test_delivery_rate_is_exact_at_the_slo_boundary() -> None:
    ledger = make()
    for i in range(1000):
        ledger.sent(f"m{i}", T0, ["n0"])
        if i:
            ledger.delivered(f"m{i}", "n0", T0 + 0.01)
    s = ledger.summary(cutoff=T0 + 10)
    assert s.delivery_rate == 99.9
    assert s.delivery_rate >= 99.9


@pytest.mark.parametrize(
    ("p", "expected"),
    [(50, 50.0), (95, 95.0), (99, 99.0), (99.9, 100.0), (100, 100.0), (0, 1.0), (1, 1.0)],
)
def test_percentile_is_nearest_rank(p: float, expected: float) -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, p) == expected


def test_percentile_of_nothing_is_none_and_of_one_is_it() -> None:
    assert percentile([], 99) is None
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99.9) == 7.0


def test_latency_percentiles_in_milliseconds() -> None:
    ledger = make(deadline=10)
    for i in range(1000):
        ledger.sent(f"m{i}", T0, ["n0"])
        ledger.delivered(f"m{i}", "n0", T0 + (i + 1) / 1000)
    lat = ledger.summary(cutoff=T0 + 20).latency_ms
    assert (lat.p50, lat.p95, lat.p99, lat.p999) == (500.0, 950.0, 990.0, 999.0)


def test_json_summary_has_exactly_the_documented_keys() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0", "s0"])
    ledger.delivered("m1", "n0", T0 + 0.1)
    doc = ledger.summary(cutoff=T0 + 10).to_json()
    assert list(doc) == [
        "sent", "on_time", "late", "lost", "duplicates", "raw_duplicates", "delivery_rate",
        "latency_ms", "unexpected", "rejected", "dead_lettered", "pending", "online", "offline", "by_kind", "by_region",
        "per_second", "worst_seconds",
    ]  # fmt: skip
    assert list(doc["latency_ms"]) == ["p50", "p95", "p99", "p999"]
    assert set(doc["by_region"]) == {"north", "south"}
    assert {"sent", "on_time", "late", "lost", "duplicates", "raw_duplicates", "delivery_rate"} <= set(
        doc["by_region"]["south"]
    )
    assert list(doc["per_second"][0]) == ["t", "sent", "on_time", "late", "lost"]
    assert doc["worst_seconds"][0]["delivery_rate"] == 50.0
    json.dumps(doc, allow_nan=False)


def test_live_progress_separates_pending_from_overdue() -> None:
    ledger = make()
    ledger.sent("a", T0 + 0.1, ["n0"])
    ledger.sent("b", T0 + 0.2, ["n1"])
    ledger.sent("c", T0 + 3.0, ["n2"])
    ledger.delivered("a", "n0", T0 + 0.3)
    p = ledger.progress(now=T0 + 3.2)
    assert (p.sent, p.delivered, p.on_time, p.late) == (3, 1, 1, 0)
    assert (p.overdue, p.pending) == (1, 1)
    assert p.delivery_rate == 50.0
    assert ledger.outstanding == 2
    ledger.delivered("b", "n1", T0 + 3.3)
    p = ledger.progress(now=T0 + 3.4)
    assert (p.late, p.overdue, p.pending) == (1, 0, 1)


def test_live_progress_agrees_with_summary_once_settled() -> None:
    ledger = make()
    for i in range(50):
        ledger.sent(f"m{i}", T0 + i / 10, [f"n{i % 4}"])
        if i % 7:
            ledger.delivered(f"m{i}", f"n{i % 4}", T0 + i / 10 + (0.2 if i % 3 else 1.4))
    s = ledger.summary(cutoff=math.inf)
    p = ledger.progress(now=T0 + 100)
    assert (p.sent, p.on_time, p.late, p.overdue) == (s.sent, s.on_time, s.late, s.lost)
    assert p.delivery_rate == s.delivery_rate


# ---- devices away on purpose, rejections, kinds ------------------------------------------------
def test_a_device_away_on_purpose_gets_its_clock_restarted_at_its_return() -> None:
    """Sent while the device was away: on time when delivered within the deadline of its return."""
    ledger = make()
    ledger.away("n0", T0 + 1, planned_end=T0 + 6)
    ledger.sent("m1", T0 + 2, ["n0"])  # while away
    ledger.sent("m2", T0 + 3, ["n0"])
    ledger.returned("n0", T0 + 6.2)
    ledger.delivered("m1", "n0", T0 + 6.4)  # 0.2 s after its return: on time
    ledger.delivered("m2", "n0", T0 + 7.9)  # 1.7 s after: late
    s = ledger.summary(cutoff=T0 + 20)
    assert (s.offline.sent, s.offline.on_time, s.offline.late, s.offline.lost) == (2, 1, 1, 0)
    assert (s.online.sent, s.sent, s.on_time) == (0, 2, 1)
    assert s.offline.latency_ms.p50 == 200.0  # measured from the return


def test_a_message_to_an_away_device_that_never_arrives_is_lost_once_the_run_is_over() -> None:
    """The checker shown to fail: the offline queue dropped it."""
    ledger = make()
    ledger.away("n0", T0 + 1, planned_end=T0 + 3)
    ledger.sent("m1", T0 + 2, ["n0"])
    ledger.returned("n0", T0 + 3.1)
    live = ledger.summary(cutoff=T0 + 3.5)  # a window read a moment after the return: not due yet
    assert (live.pending, live.lost) == (1, 0)
    final = ledger.summary(cutoff=T0 + 3.5, final=True)
    assert (final.pending, final.lost, final.offline.lost) == (0, 1, 1)
    assert ledger.summary(cutoff=T0 + 10).lost == 1  # due since T0 + 4.1


def test_a_device_that_never_comes_back_has_its_messages_counted_from_its_planned_return() -> None:
    ledger = make()
    ledger.away("n0", T0 + 1, planned_end=T0 + 3)
    ledger.sent("m1", T0 + 2, ["n0"])
    assert ledger.summary(cutoff=T0 + 10).lost == 1  # nothing hides behind a return that never came


def test_messages_sent_just_before_a_device_left_are_in_the_offline_class() -> None:
    ledger = make()
    ledger.sent("m0", T0 + 0.5, ["n0"])  # before the deadline window of the leaving: an online message
    ledger.sent("m1", T0 + 4.5, ["n0"])  # less than a deadline before it left: could not be acked in time
    ledger.away("n0", T0 + 5, planned_end=T0 + 7)
    ledger.returned("n0", T0 + 7)
    ledger.delivered("m0", "n0", T0 + 0.6)
    ledger.delivered("m1", "n0", T0 + 7.3)
    s = ledger.summary(cutoff=T0 + 20)
    assert (s.online.sent, s.online.on_time, s.offline.sent, s.offline.on_time) == (1, 1, 1, 1)


def test_rejected_pushes_are_visible_and_not_lost() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.sent("g1", T0, ["n1", "n2"], kind="group")
    ledger.rejected("m1")
    ledger.rejected("g1")
    s = ledger.summary(cutoff=T0 + 10)
    assert (s.sent, s.lost, s.rejected) == (0, 0, 3)
    ledger.delivered("m1", "n0", T0 + 0.1)  # "rejected", then delivered anyway: the platform lied
    assert ledger.summary(cutoff=T0 + 10).unexpected == 1


def test_dead_lettered_pushes_are_rejected_not_lost_and_cross_the_wire() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.sent("g1", T0, ["n1", "n2"], kind="group")
    ledger.sent("m2", T0, ["n0"])
    assert ledger.summary(cutoff=T0 + 10, final=True).lost == 4  # the checker sees the loss first
    ledger.dead_lettered("g1")
    ledger.rejected("m2")
    s = ledger.summary(cutoff=T0 + 10, final=True)
    assert (s.lost, s.rejected, s.dead_lettered) == (1, 3, 2)
    assert "m1" in ledger and "g9" not in ledger
    again = Ledger.from_wire(json.loads(json.dumps(ledger.to_wire())))
    assert again.summary(cutoff=T0 + 10, final=True).to_json() == s.to_json()
    merged = make()
    merged.merge(again)
    assert merged.summary(cutoff=T0 + 10, final=True).dead_lettered == 2


def test_an_old_wire_ledger_without_dead_letters_still_loads() -> None:
    wire = make().to_wire()
    del wire["dead_lettered"]
    assert Ledger.from_wire(wire).summary().dead_lettered == 0


def test_summary_splits_single_group_and_region_group_pushes() -> None:
    ledger = make()
    ledger.sent("m1", T0, ["n0"])
    ledger.sent("g1", T0, ["n1", "s1"], kind="group")
    ledger.sent("r1", T0, ["s2"], open=True, kind="region-group")
    for msg, dev in (("m1", "n0"), ("g1", "n1"), ("r1", "s2"), ("r1", "s3")):
        ledger.delivered(msg, dev, T0 + 0.1)
    s = ledger.summary(cutoff=T0 + 10)
    assert list(s.by_kind) == ["single", "group", "region-group"]
    assert (s.by_kind["group"].sent, s.by_kind["group"].lost) == (2, 1)
    assert (s.by_kind["region-group"].sent, s.by_kind["region-group"].on_time) == (2, 2)
    assert s.to_json()["by_kind"]["single"]["on_time"] == 1


def test_away_and_rejected_cross_the_wire_and_merge() -> None:
    worker = make()
    worker.away("n0", T0 + 1, planned_end=T0 + 3)
    worker.sent("m1", T0 + 2, ["n0"], kind="group")
    worker.rejected("m2")
    worker.returned("n0", T0 + 3.5)
    worker.delivered("m1", "n0", T0 + 3.6)
    parent = make()
    parent.merge(Ledger.from_wire(json.loads(json.dumps(worker.to_wire()))))
    assert parent.summary(cutoff=T0 + 10).to_json() == worker.summary(cutoff=T0 + 10).to_json()


def test_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="deadline"):
        Ledger(deadline=0)
