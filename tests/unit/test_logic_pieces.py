"""Logic gateway pieces that need no network: weights, config, group ids, result sorting, payloads."""

from __future__ import annotations

import pytest
from pushstack.delivery import Item, PayloadResolver, sort_result
from pushstack.kvclient import DiskKVError
from pushstack.logic import LogicConfig, check_weights, default_weights, group_messages
from redis.exceptions import ConnectionError as RedisConnectionError

from pushctl.contract.api import DeliverResult, GroupTask, Message


def test_weights_default_to_an_even_split() -> None:
    assert default_weights(["idc2", "idc1"]) == {"idc1": 50.0, "idc2": 50.0}


def test_weights_fill_missing_idcs_with_zero() -> None:
    assert check_weights({"idc2": 100}, ["idc1", "idc2"]) == {"idc1": 0.0, "idc2": 100.0}


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        ({"idc3": 1}, "unknown idc"),
        ({"idc1": -1, "idc2": 5}, "negative"),
        ({"idc1": 0, "idc2": 0}, "positive"),
    ],
    ids=["UnknownIdc", "NegativeWeight", "AllZero"],
)
def test_invalid_weights_are_refused(weights: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        check_weights(weights, ["idc1", "idc2"])


def test_config_reads_the_environment() -> None:
    cfg = LogicConfig.from_env(
        {"PUSHCTL_OFFLINE_STORAGE": "0", "PUSHCTL_OFFLINE_TTL_S": "60", "PUSHCTL_LOGIC_BATCH": "7"}
    )
    assert (cfg.offline_storage, cfg.offline_ttl_s, cfg.batch) == (False, 60, 7)
    assert LogicConfig.from_env({}) == LogicConfig()


def test_group_messages_carry_the_group_id_to_every_device() -> None:
    task = GroupTask(id="g1", devices=["a", "b"], sent_at=5.0, payload_ref="group-payload:g1")
    msgs = group_messages(task)
    assert [(m.id, m.device, m.group, m.payload_ref) for m in msgs] == [
        ("g1", "a", "g1", "group-payload:g1"),
        ("g1", "b", "g1", "group-payload:g1"),
    ]


def _item(mid: str, device: str = "d", **kw: object) -> Item:
    return Item(Message(id=mid, device=device, sent_at=0.0, **kw), None)  # type: ignore[arg-type]


def test_results_map_back_and_unmentioned_ids_are_retried() -> None:
    items = [_item("a"), _item("b"), _item("c"), _item("d")]
    out = sort_result(items, DeliverResult(acked=["a"], offline=["b"], timeout=["c"]))
    assert [it.msg.id for it in out.acked] == ["a"]
    assert [it.msg.id for it in out.offline] == ["b"]
    assert sorted(it.msg.id for it in out.retry) == ["c", "d"]


def test_group_results_with_devices_are_exact_per_device() -> None:
    items = [_item("g", device=d, group="g") for d in ("x", "y", "z")]
    result = DeliverResult(
        acked=["g"], acked_devices=["y"], offline=["g"], offline_devices=["x"], timeout=[], timeout_devices=[]
    )
    out = sort_result(items, result)
    assert [it.msg.device for it in out.acked] == ["y"]
    assert [it.msg.device for it in out.offline] == ["x"]
    assert [it.msg.device for it in out.retry] == ["z"]


def test_group_results_without_devices_never_guess_an_ack() -> None:
    items = [_item("g", device=d, group="g") for d in ("x", "y")]
    all_acked = sort_result(items, DeliverResult(acked=["g", "g"], offline=[], timeout=[]))
    assert len(all_acked.acked) == 2
    # one acked, one offline, but which? Both are re-sent rather than one being lost
    mixed = sort_result(items, DeliverResult(acked=["g"], offline=["g"], timeout=[]))
    assert not mixed.acked and not mixed.offline
    assert len(mixed.retry) == 2


class FakePool:
    def __init__(self) -> None:
        self.idle_dropped = 0

    async def disconnect(self, inuse_connections: bool = True) -> None:
        assert not inuse_connections  # another task's command must not be cut off
        self.idle_dropped += 1


class FakeCache:
    def __init__(self, values: dict[str, str], *, down: bool = False) -> None:
        self.values = values
        self.down = down
        self.connection_pool = FakePool()

    async def mget(self, keys: list[str]) -> list[str | None]:
        if self.down:
            raise RedisConnectionError("cache down")
        return [self.values.get(k) for k in keys]


class FakeKV:
    def __init__(self, values: dict[str, str], *, down: bool = False) -> None:
        self.values = values
        self.down = down
        self.reads = 0

    async def get(self, key: str) -> str | None:
        self.reads += 1
        if self.down:
            raise DiskKVError("kv down")
        return self.values.get(key)


def _resolver(cache: FakeCache, kv: FakeKV) -> PayloadResolver:
    return PayloadResolver(cache, kv)  # type: ignore[arg-type]


async def test_singles_are_filled_from_the_cache_and_missing_ones_named() -> None:
    msgs = [
        Message(id="1", device="d", sent_at=0, payload_ref="payload:1"),
        Message(id="2", device="d", sent_at=0, payload_ref="payload:2"),
        Message(id="3", device="d", sent_at=0, payload="inline"),
    ]
    missing = await _resolver(FakeCache({"payload:1": "one"}), FakeKV({})).fill_singles(msgs)
    assert missing == ["2"]
    assert [m.payload for m in msgs] == ["one", None, "inline"]


async def test_a_failing_cache_asks_for_every_single_inline() -> None:
    msgs = [Message(id="1", device="d", sent_at=0, payload_ref="payload:1")]
    resolver = _resolver(FakeCache({}, down=True), FakeKV({}))
    assert await resolver.fill_singles(msgs) == ["1"]
    assert resolver.cache_ok is False


async def test_group_payloads_come_from_the_disk_kv_when_the_cache_is_down() -> None:
    kv = FakeKV({"group-payload:g": "hello"})
    cache = FakeCache({}, down=True)
    resolver = _resolver(cache, kv)
    items = [_item(f"g:{i}", payload_ref="group-payload:g", group="g") for i in range(100)]
    out = await resolver.resolve(items)
    assert len(out.ready) == 100 and not out.later and not out.lost
    # the failure dropped the idle pooled connections, so none fails a read once the cache is back
    assert cache.connection_pool.idle_dropped == 1
    assert {it.msg.payload for it in out.ready} == {"hello"}
    assert kv.reads == 1  # one read per group payload, not per device
    again = await resolver.resolve([_item("g:x", payload_ref="group-payload:g", group="g")])
    assert again.ready and kv.reads == 1  # remembered


async def test_a_group_payload_not_yet_persisted_waits() -> None:
    out = await _resolver(FakeCache({}), FakeKV({})).resolve([_item("g:1", payload_ref="group-payload:g", group="g")])
    assert [it.msg.id for it in out.later] == ["g:1"]


async def test_a_single_payload_missing_from_a_healthy_cache_is_lost() -> None:
    out = await _resolver(FakeCache({}), FakeKV({})).resolve([_item("1", payload_ref="payload:1")])
    assert [it.msg.id for it in out.lost] == ["1"]


async def test_a_single_payload_behind_a_failing_cache_waits() -> None:
    out = await _resolver(FakeCache({}, down=True), FakeKV({})).resolve([_item("1", payload_ref="payload:1")])
    assert [it.msg.id for it in out.later] == ["1"]
