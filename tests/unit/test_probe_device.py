"""Device pieces that need no network: backoff, URLs, plain-data config and stats."""

from __future__ import annotations

import random

import pytest

from pushctl.contract import frames
from pushctl.probe.device import DeviceConfig, DeviceStats, ReconnectEvent, backoff_delay, ws_url


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (10, 5.0), (50, 5.0)]:
        delays = [backoff_delay(attempt, 0.1, 5.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered: a storm spreads out


@pytest.mark.parametrize(
    ("url", "dialled"),
    [
        ("ws://127.0.0.1:18201/ws", "ws://127.0.0.1:18201/ws"),
        ("ws://127.0.0.1:18201", "ws://127.0.0.1:18201/ws"),
        ("ws://127.0.0.1:18201/", "ws://127.0.0.1:18201/ws"),
        ("wss://push.example/v2/ws", "wss://push.example/v2/ws"),
    ],
)
def test_ws_url_adds_the_contract_path_only_when_missing(url: str, dialled: str) -> None:
    assert ws_url(url) == dialled


def test_config_and_stats_cross_processes_as_json() -> None:
    config = DeviceConfig(
        dispatcher_url="http://127.0.0.1:18100",
        secret="s3cret-token",  # noqa: S106 - a test secret
        fallback={"north": [("north", "ws://a/ws"), ("east", "ws://b/ws")]},
        reconnect=False,
    )
    assert DeviceConfig.from_json(config.to_json()) == config
    event = ReconnectEvent("d1", "order", 10.0, 10.25, "north", "east", 2)
    assert event.duration == 0.25
    stats = DeviceStats("d1", "north", region="east", connects=2, events=[event])
    assert DeviceStats.from_json(stats.to_json()) == stats
    assert ReconnectEvent("d1", "lost", 10.0, None, "north", None, 5).duration is None


@pytest.mark.parametrize("msg_id", ["m-1", 'é"\\\n', "id\u2028x", ""])
def test_ack_frame_is_the_contract_frame_byte_for_byte(msg_id: str) -> None:
    """The device's hot-path ack is exactly what the pydantic model would write."""
    assert frames.ack_frame(msg_id) == frames.Ack(id=msg_id).model_dump_json()
