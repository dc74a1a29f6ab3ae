"""Ledger shards merge exactly: the merged parts equal the ledger of the whole."""

from __future__ import annotations

import json
import random

import pytest

from pushctl.probe.ledger import Ledger

T0 = 5_000.0


def scenario(
    seed: int,
) -> tuple[dict[str, str], list[tuple[str, float, list[str], bool]], list[tuple[str, str, float, bool]]]:
    """Random homes, sends (singles and groups) and deliveries (late, lost, duplicated, reordered)."""
    rng = random.Random(seed)
    homes = {f"d{i}": rng.choice(["north", "east", "south"]) for i in range(40)}
    devices = list(homes)
    sends = []
    deliveries = []
    for k in range(400):
        at = T0 + rng.uniform(0, 20)
        group = rng.random() < 0.2
        targets = rng.sample(devices, rng.randint(2, 6)) if group else [rng.choice(devices)]
        is_open = group and rng.random() < 0.3
        sends.append((f"m{k}", at, targets, is_open))
        for dev in targets:
            if rng.random() < 0.05:
                continue  # lost
            latency = rng.choice([rng.uniform(0.001, 0.9), rng.uniform(1.1, 4.0), rng.uniform(6, 9)])
            deliveries.append((f"m{k}", dev, at + latency, True))
            for _ in range(rng.choice([0, 0, 0, 1, 2])):
                deliveries.append((f"m{k}", dev, at + latency + rng.uniform(0, 2), rng.random() < 0.1))
        if is_open:
            extra = rng.choice(devices)
            deliveries.append((f"m{k}", extra, at + 0.2, True))
    deliveries.append(("stray", devices[0], T0 + 1, True))
    rng.shuffle(deliveries)
    return homes, sends, deliveries


def whole(seed: int) -> Ledger:
    homes, sends, deliveries = scenario(seed)
    ledger = Ledger(deadline=1.0, t0=T0)
    for dev, home in homes.items():
        ledger.register(dev, home)
    for msg_id, at, targets, is_open in sends:
        ledger.sent(msg_id, at, targets, open=is_open)
    for msg_id, dev, at, app in deliveries:
        ledger.delivered(msg_id, dev, at, app=app)
    return ledger


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shards", [2, 3, 8])
def test_merging_device_shards_equals_the_single_ledger(seed: int, shards: int) -> None:
    homes, sends, deliveries = scenario(seed)
    parent = Ledger(deadline=1.0, t0=T0)
    for dev, home in homes.items():
        parent.register(dev, home)
    for msg_id, at, targets, is_open in sends:
        parent.sent(msg_id, at, targets, open=is_open)
    parts = [Ledger(deadline=1.0) for _ in range(shards)]
    for msg_id, dev, at, app in deliveries:
        parts[int(dev[1:]) % shards].delivered(msg_id, dev, at, app=app)
    for part in parts:
        parent.merge(Ledger.from_wire(json.loads(json.dumps(part.to_wire()))))  # as a worker ships it
    expected = whole(seed).summary(cutoff=T0 + 26).to_json()
    assert parent.summary(cutoff=T0 + 26).to_json() == expected


@pytest.mark.parametrize("seed", [4, 5])
def test_merge_is_exact_for_any_split_even_of_one_device_in_streamed_deltas(seed: int) -> None:
    """Workers ship deltas every flush: one (id, device) may be spread over several of them."""
    homes, sends, deliveries = scenario(seed)
    rng = random.Random(seed)
    sender = Ledger(deadline=1.0, t0=T0)
    for msg_id, at, targets, is_open in sends:
        sender.sent(msg_id, at, targets, open=is_open)
    deltas = [Ledger(deadline=1.0) for _ in range(7)]
    for dev, home in homes.items():
        rng.choice(deltas).register(dev, home)
    for msg_id, dev, at, app in deliveries:
        rng.choice(deltas).delivered(msg_id, dev, at, app=app)
    merged = Ledger(deadline=1.0)
    for part in [*deltas[:3], sender, *deltas[3:]]:  # order does not matter either
        merged.merge(part)
    assert merged.summary(cutoff=T0 + 26).to_json() == whole(seed).summary(cutoff=T0 + 26).to_json()
    assert merged.summary(cutoff=T0 + 26).unexpected == whole(seed).summary(cutoff=T0 + 26).unexpected


def test_merged_live_progress_matches_the_summary() -> None:
    homes, sends, deliveries = scenario(9)
    parent = Ledger(deadline=1.0, t0=T0)
    for dev, home in homes.items():
        parent.register(dev, home)
    for msg_id, at, targets, is_open in sends:
        parent.sent(msg_id, at, targets, open=is_open)
    part = Ledger(deadline=1.0)
    for msg_id, dev, at, app in sorted(deliveries, key=lambda d: d[2]):
        part.delivered(msg_id, dev, at, app=app)
    parent.merge(part)
    s = parent.summary()
    p = parent.progress(now=T0 + 1000)
    assert (p.sent, p.on_time, p.late, p.overdue) == (s.sent, s.on_time, s.late, s.lost)
    assert (p.duplicates, p.raw_duplicates) == (s.duplicates, s.raw_duplicates)
    assert parent.outstanding == s.lost


def test_a_shard_that_lost_deliveries_shows_in_the_merge() -> None:
    """The checker shown to fail: drop one shard's report and the merged ledger reports the loss."""
    homes, sends, deliveries = scenario(7)
    parent = Ledger(deadline=1.0, t0=T0)
    for dev, home in homes.items():
        parent.register(dev, home)
    for msg_id, at, targets, is_open in sends:
        parent.sent(msg_id, at, targets, open=is_open)
    parts = [Ledger(deadline=1.0) for _ in range(2)]
    for msg_id, dev, at, app in deliveries:
        parts[int(dev[1:]) % 2].delivered(msg_id, dev, at, app=app)
    parent.merge(parts[0])  # parts[1] never reported
    full = whole(7).summary(cutoff=T0 + 26)
    partial = parent.summary(cutoff=T0 + 26)
    assert partial.sent <= full.sent  # open region groups adopt only the receivers that reported
    assert partial.lost > full.lost
    assert partial.delivery_rate is not None and full.delivery_rate is not None
    assert partial.delivery_rate < full.delivery_rate


def test_merging_the_same_message_sent_by_two_senders_unions_its_targets() -> None:
    a, b = Ledger(deadline=1.0, t0=T0), Ledger(deadline=1.0, t0=T0 - 1)
    a.sent("g", T0, ["x", "y"])
    b.sent("g", T0, ["y", "z"])
    a.merge(b)
    assert a.summary().sent == 3
    assert a.t0 == T0 - 1
