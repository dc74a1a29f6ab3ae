"""ToxiproxyClient against a fake Toxiproxy (`httpx.MockTransport`): errors, timeouts, read-back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pushctl.errors import TargetUnreachable, ToxiproxyError
from pushctl.faults.toxiproxy import USER_AGENT, ProxySpec, Toxic, ToxiproxyClient
from tests.fake_toxiproxy import FakeToxiproxy, Hook, _err

URL = "http://127.0.0.1:8474"


@pytest.fixture
def fake() -> FakeToxiproxy:
    return FakeToxiproxy()


def client(fake: FakeToxiproxy, **kw: Any) -> ToxiproxyClient:
    return ToxiproxyClient(URL, transport=fake.transport(), backoff=0, **kw)


def lat(name: str = "lat-down", ms: int = 100) -> Toxic:
    return Toxic(name=name, type="latency", attributes={"latency": ms})


def times_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def applied_then_times_out(fake: FakeToxiproxy) -> Hook:
    def hook(request: httpx.Request) -> httpx.Response:
        fake.serve(request)
        raise httpx.ReadTimeout("timed out", request=request)

    return hook


# ---- what every call carries ------------------------------------------------------------------
async def test_every_call_has_our_user_agent_and_a_timeout(fake: FakeToxiproxy) -> None:
    async with client(fake, timeout=2.5) as tp:
        assert await tp.version() == "2.12.0"
        await tp.create_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    for req in fake.requests:
        assert req.headers["User-Agent"] == USER_AGENT
        assert not req.headers["User-Agent"].startswith("Mozilla/")
        assert req.extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


# ---- errors become ours -----------------------------------------------------------------------
async def test_error_body_becomes_toxiproxy_error_with_status(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    async with client(fake) as tp:
        with pytest.raises(ToxiproxyError) as info:
            await tp.add_toxic("a", Toxic(name="x", type="nope"))
    assert info.value.status == 400
    assert not info.value.retriable
    assert "invalid toxic type" in str(info.value)
    assert URL in str(info.value)
    assert fake.calls("POST") == 1  # a 400 is not retried


async def test_missing_proxy_is_named(fake: FakeToxiproxy) -> None:
    async with client(fake) as tp:
        with pytest.raises(ToxiproxyError) as info:
            await tp.set_enabled("device-north", False)
        assert await tp.find_proxy("device-north") is None
    assert info.value.status == 404
    assert info.value.message == f"Toxiproxy at {URL} has no proxy 'device-north'"


async def test_existing_toxic_is_a_clear_conflict(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    async with client(fake) as tp:
        await tp.add_toxic("a", lat())
        with pytest.raises(ToxiproxyError) as info:
            await tp.add_toxic("a", lat())
    assert info.value.status == 409
    assert "already has a toxic named 'lat-down'" in str(info.value)


async def test_timeout_becomes_target_unreachable_after_bounded_retries(fake: FakeToxiproxy) -> None:
    for _ in range(5):
        fake.inject("GET", "/proxies", times_out)
    async with client(fake, attempts=3) as tp:
        with pytest.raises(TargetUnreachable) as info:
            await tp.proxies()
    assert not isinstance(info.value, ToxiproxyError)
    assert URL in str(info.value)
    assert "did not answer GET /proxies within 5s" in str(info.value)
    assert fake.calls("GET", "/proxies") == 3


async def test_connection_refused_names_the_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with ToxiproxyClient(URL, transport=httpx.MockTransport(refuse), backoff=0) as tp:
        with pytest.raises(TargetUnreachable) as info:
            await tp.version()
    assert info.value.message == f"cannot connect to Toxiproxy at {URL}"
    assert info.value.exit_code == 4


async def test_non_json_error_body_is_reported(fake: FakeToxiproxy) -> None:
    fake.inject("GET", "/proxies", lambda r: httpx.Response(403, text="User agent not allowed"))
    async with client(fake) as tp:
        with pytest.raises(ToxiproxyError) as info:
            await tp.proxies()
    assert info.value.status == 403
    assert "User agent not allowed" in str(info.value)


async def test_malformed_answer_is_an_error_not_a_crash(fake: FakeToxiproxy) -> None:
    fake.inject("GET", "/proxies", lambda r: httpx.Response(200, json={"a": {"name": "a"}}))
    async with client(fake) as tp:
        with pytest.raises(ToxiproxyError, match="unexpected answer to GET /proxies"):
            await tp.proxies()


# ---- mutations are read back ------------------------------------------------------------------
async def test_remove_toxic_retries_on_503_and_confirms(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    fake.inject("DELETE", "/proxies/a/toxics/lat-down", lambda r: _err(503, "busy"))
    async with client(fake) as tp:
        await tp.add_toxic("a", lat())
        assert await tp.remove_toxic("a", "lat-down") is True
        assert await tp.toxics("a") == []
    assert fake.calls("DELETE") == 2


async def test_remove_toxic_that_timed_out_but_worked_is_confirmed_not_repeated(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    fake.inject("DELETE", "/proxies/a/toxics/lat-down", applied_then_times_out(fake))
    async with client(fake) as tp:
        await tp.add_toxic("a", lat())
        assert await tp.remove_toxic("a", "lat-down") is True
    assert fake.calls("DELETE") == 1
    assert fake.proxies()["a"]["toxics"] == []


async def test_remove_toxic_that_said_ok_but_stayed_is_removed_again(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    fake.inject("DELETE", "/proxies/a/toxics/lat-down", lambda r: httpx.Response(204))  # a lie
    async with client(fake) as tp:
        await tp.add_toxic("a", lat())
        await tp.remove_toxic("a", "lat-down")
    assert fake.calls("DELETE") == 2
    assert fake.proxies()["a"]["toxics"] == []


async def test_remove_toxic_gives_up_after_bounded_attempts(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    for _ in range(3):
        fake.inject("DELETE", "/proxies/a/toxics/lat-down", lambda r: _err(503, "busy"))
    async with client(fake, attempts=3) as tp:
        await tp.add_toxic("a", lat())
        with pytest.raises(ToxiproxyError) as info:
            await tp.remove_toxic("a", "lat-down")
    assert info.value.status == 503
    assert "did not confirm it after 3 attempts" in str(info.value)
    assert fake.calls("DELETE") == 3


async def test_remove_missing_toxic(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    async with client(fake) as tp:
        assert await tp.remove_toxic("a", "ghost", missing_ok=True) is False
        with pytest.raises(ToxiproxyError, match="has no toxic 'ghost'"):
            await tp.remove_toxic("a", "ghost")
        with pytest.raises(ToxiproxyError, match="has no proxy 'b'"):
            await tp.remove_toxic("b", "ghost", missing_ok=True)


async def test_create_that_timed_out_but_worked_is_confirmed_on_409(fake: FakeToxiproxy) -> None:
    fake.inject("POST", "/proxies", applied_then_times_out(fake))
    fake.inject("GET", "/proxies/a", lambda r: _err(503, "busy"))  # the first read-back fails too
    async with client(fake) as tp:
        state = await tp.create_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    assert state.enabled
    assert state.upstream == "127.0.0.1:17001"
    assert fake.calls("POST", "/proxies") == 2  # the retry met 409 and read back instead of failing


async def test_add_toxic_that_timed_out_but_worked(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    fake.inject("POST", "/proxies/a/toxics", applied_then_times_out(fake))
    async with client(fake) as tp:
        state = await tp.add_toxic("a", lat(ms=250))
    assert state.attributes["latency"] == 250
    assert fake.calls("POST") == 1


async def test_add_toxic_does_not_accept_a_different_toxic_of_the_same_name(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    fake.inject("POST", "/proxies/a/toxics", lambda r: httpx.Response(200, json={}))
    async with client(fake, attempts=2) as tp:
        await tp.add_toxic("a", lat(ms=250))  # the retry adds it for real
        fake.proxies()["a"]["toxics"][0]["attributes"]["latency"] = 1  # someone else changed it
        with pytest.raises(ToxiproxyError):
            await tp.add_toxic("a", lat(ms=250))


async def test_set_enabled_is_read_back(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    fake.inject("PATCH", "/proxies/a", lambda r: httpx.Response(200, json=fake.proxies()["a"]))  # ignored
    async with client(fake) as tp:
        state = await tp.set_enabled("a", False)
    assert state.enabled is False
    assert fake.calls("PATCH") == 2


# ---- proxies ----------------------------------------------------------------------------------
async def test_ensure_proxy_creates_updates_and_leaves_alone(fake: FakeToxiproxy) -> None:
    async with client(fake) as tp:
        first = await tp.ensure_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
        same = await tp.ensure_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
        moved = await tp.ensure_proxy("a", "127.0.0.1:18001", "127.0.0.1:17002")
        await tp.set_enabled("a", False)
        back = await tp.ensure_proxy("a", "127.0.0.1:18001", "127.0.0.1:17002")
    assert [c.action for c in (first, same, moved, back)] == ["created", "unchanged", "updated", "enabled"]
    assert moved.before is not None and moved.before.upstream == "127.0.0.1:17001"
    assert moved.after.upstream == "127.0.0.1:17002"
    assert fake.calls("POST", "/proxies") == 1


async def test_listen_read_back_as_bound_address_counts_as_same(fake: FakeToxiproxy) -> None:
    fake.add_proxy("a", "127.0.0.1:18001", "127.0.0.1:17001")
    async with client(fake) as tp:
        change = await tp.ensure_proxy("a", "localhost:18001", "127.0.0.1:17001")
    assert change.action == "unchanged"


async def test_delete_proxy_and_reset_and_populate(fake: FakeToxiproxy) -> None:
    async with client(fake) as tp:
        specs = [ProxySpec(name=n, listen=f"127.0.0.1:1800{i}", upstream="127.0.0.1:17001") for i, n in enumerate("ab")]
        states = await tp.populate(specs)
        assert [s.name for s in states] == ["a", "b"]
        await tp.add_toxic("a", lat())
        await tp.set_enabled("b", False)
        await tp.reset()
        assert all(p.enabled and not p.toxics for p in (await tp.proxies()).values())
        assert await tp.delete_proxy("a") is True
        assert await tp.delete_proxy("a") is False
        with pytest.raises(ToxiproxyError, match="no proxy 'a'"):
            await tp.delete_proxy("a", missing_ok=False)
    assert set(fake.proxies()) == {"b"}


async def test_aclose_is_idempotent(fake: FakeToxiproxy) -> None:
    tp = client(fake)
    await tp.aclose()
    await tp.aclose()
