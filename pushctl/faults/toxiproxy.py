"""An async client for the Toxiproxy HTTP API, on httpx.

Rollback depends on this module, so it is strict: every call has a timeout; a connection failure
or timeout becomes `TargetUnreachable` naming the server; Toxiproxy's `{"error", "status"}`
bodies become `ToxiproxyError` with the status; and every mutation is confirmed by reading the
server's state back, retried a bounded number of times while the error is `retriable` (removing
toxics under load has hung or answered 503: Toxiproxy #159, #412, #558). A call that timed out
may still have taken effect, so a retry that meets "already exists" / "not found" checks the
state instead of failing.

    async with ToxiproxyClient("http://127.0.0.1:17474") as tp:
        await tp.ensure_proxy("device-north", "127.0.0.1:18201", "127.0.0.1:17201")
        await tp.add_toxic("device-north", Toxic(name="latency-down", type="latency",
                                                  attributes={"latency": 200}))
        await tp.remove_toxic("device-north", "latency-down")
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pushctl import __version__
from pushctl._http import tls
from pushctl.errors import PushctlError, TargetUnreachable, ToxiproxyError

USER_AGENT = f"pushctl/{__version__} (toxiproxy-client)"  # a Mozilla/ agent gets 403 from Toxiproxy
log = logging.getLogger(__name__)
T = TypeVar("T")
StreamName = Literal["upstream", "downstream"]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Toxic(_Wire):
    """A toxic to add: the body of `POST /proxies/{proxy}/toxics`."""

    name: str
    type: str
    stream: StreamName = "downstream"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)
    attributes: dict[str, int] = Field(default_factory=dict)


class ToxicState(Toxic):
    """A toxic as the server reports it (its attributes include the server's defaults)."""

    def matches(self, wanted: Toxic) -> bool:
        return (
            self.name == wanted.name
            and self.type == wanted.type
            and self.stream == wanted.stream
            and abs(self.toxicity - wanted.toxicity) < 1e-9
            and all(self.attributes.get(k) == v for k, v in wanted.attributes.items())
        )


class ProxySpec(_Wire):
    """A proxy to create: the body of `POST /proxies` and one item of `POST /populate`."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True


class ProxyState(ProxySpec):
    """A proxy as the server reports it."""

    toxics: tuple[ToxicState, ...] = ()

    def toxic(self, name: str) -> ToxicState | None:
        return next((t for t in self.toxics if t.name == name), None)

    def routes(self, listen: str, upstream: str) -> bool:
        """Whether this proxy listens on `listen` and forwards to `upstream`."""
        return _same_addr(self.listen, listen) and self.upstream == upstream


@dataclass(frozen=True)
class ProxyChange:
    """What `ensure_proxy` did to one proxy."""

    name: str
    action: Literal["created", "updated", "enabled", "disabled", "unchanged"]
    before: ProxyState | None
    after: ProxyState


_PROXIES = TypeAdapter(dict[str, ProxyState])
_PROXY = TypeAdapter(ProxyState)
_TOXICS = TypeAdapter(list[ToxicState])


class ToxiproxyClient:
    """One Toxiproxy server's API. Use as `async with`; `aclose()` is idempotent.

    `attempts` bounds how often a call is tried while its error is `retriable` (5xx, timeouts,
    dropped connections); `transport` lets tests put a fake server (`httpx.MockTransport`) here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._http = httpx.AsyncClient(
            verify=tls(),
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            trust_env=False,  # the control API is dialed directly, never through $HTTP_PROXY
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- reads -------------------------------------------------------------------------------
    async def version(self) -> str:
        resp = await self._read(lambda: self._call("GET", "/version"))
        try:
            body = resp.json()
        except ValueError:
            return resp.text.strip()  # Toxiproxy before 2.6 answers plain text
        return str(body.get("version", "")) if isinstance(body, dict) else str(body)

    async def proxies(self) -> dict[str, ProxyState]:
        return await self._read(self._proxies_once)

    async def proxy(self, name: str) -> ProxyState:
        """The proxy called `name`; a `ToxiproxyError` (status 404) naming it if there is none."""
        return await self._read(lambda: self._proxy_once(name))

    async def find_proxy(self, name: str) -> ProxyState | None:
        """The proxy called `name`, or None."""
        return await self._read(lambda: self._find_once(name))

    async def toxics(self, proxy: str) -> list[ToxicState]:
        return await self._read(lambda: self._toxics_once(proxy))

    # The read-backs of mutations read once: `_confirm` already retries around them.
    async def _proxies_once(self) -> dict[str, ProxyState]:
        return self._parse(_PROXIES, await self._call("GET", "/proxies"))

    async def _proxy_once(self, name: str) -> ProxyState:
        return self._parse(_PROXY, await self._call("GET", f"/proxies/{name}", proxy=name))

    async def _find_once(self, name: str) -> ProxyState | None:
        resp = await self._call("GET", f"/proxies/{name}", proxy=name, allow={404})
        return None if resp.status_code == 404 else self._parse(_PROXY, resp)

    async def _toxics_once(self, proxy: str) -> list[ToxicState]:
        return self._parse(_TOXICS, await self._call("GET", f"/proxies/{proxy}/toxics", proxy=proxy))

    # ---- proxies -----------------------------------------------------------------------------
    async def populate(self, specs: Sequence[ProxySpec]) -> list[ProxyState]:
        """Create or update many proxies at once (idempotent for unchanged listen/upstream)."""
        body = [s.model_dump() for s in specs]

        async def check() -> list[ProxyState] | None:
            have = await self._proxies_once()
            found = [have.get(s.name) for s in specs]
            ok = all(p is not None and p.routes(s.listen, s.upstream) for p, s in zip(found, specs, strict=True))
            return [p for p in found if p is not None] if ok else None

        return await self._confirm(
            f"populate {len(specs)} proxies", lambda: self._call("POST", "/populate", json=body), check
        )

    async def create_proxy(self, name: str, listen: str, upstream: str, *, enabled: bool = True) -> ProxyState:
        body = ProxySpec(name=name, listen=listen, upstream=upstream, enabled=enabled).model_dump()

        async def check() -> ProxyState | None:
            p = await self._find_once(name)
            return p if p is not None and p.routes(listen, upstream) and p.enabled == enabled else None

        return await self._confirm(
            f"create proxy {name!r}",
            lambda: self._call("POST", "/proxies", json=body, proxy=name),
            check,
            done_statuses={409},
        )

    async def ensure_proxy(self, name: str, listen: str, upstream: str, *, enabled: bool = True) -> ProxyChange:
        """Create the proxy, or PATCH it where its listen, upstream or enabled flag differ."""
        before = await self.find_proxy(name)
        if before is None:
            after = await self.create_proxy(name, listen, upstream, enabled=enabled)
            return ProxyChange(name, "created", None, after)
        if before.routes(listen, upstream):
            if before.enabled == enabled:
                return ProxyChange(name, "unchanged", before, before)
            after = await self.set_enabled(name, enabled)
            return ProxyChange(name, "enabled" if enabled else "disabled", before, after)
        body = {"listen": listen, "upstream": upstream, "enabled": enabled}

        async def check() -> ProxyState | None:
            p = await self._proxy_once(name)
            return p if p.routes(listen, upstream) and p.enabled == enabled else None

        after = await self._confirm(
            f"update proxy {name!r}",
            lambda: self._call("PATCH", f"/proxies/{name}", json=body, proxy=name),
            check,
        )
        return ProxyChange(name, "updated", before, after)

    async def set_enabled(self, name: str, enabled: bool) -> ProxyState:
        """Enable or disable a proxy; disabling closes its listener and every open connection."""

        async def check() -> ProxyState | None:
            p = await self._proxy_once(name)
            return p if p.enabled == enabled else None

        return await self._confirm(
            f"{'enable' if enabled else 'disable'} proxy {name!r}",
            lambda: self._call("PATCH", f"/proxies/{name}", json={"enabled": enabled}, proxy=name),
            check,
        )

    async def delete_proxy(self, name: str, *, missing_ok: bool = True) -> bool:
        """Delete a proxy; True if it existed."""
        existed, tries = True, 0

        async def do() -> None:
            nonlocal existed, tries
            tries += 1
            resp = await self._call("DELETE", f"/proxies/{name}", proxy=name, allow={404} if missing_ok else set())
            if not resp.is_success and tries == 1:  # on a retry, 404 means an earlier try deleted it
                existed = False

        async def check() -> bool | None:
            return True if await self._find_once(name) is None else None

        await self._confirm(f"delete proxy {name!r}", do, check, done_statuses={404})
        return existed

    async def reset(self) -> None:
        """Re-enable every proxy and remove every toxic (proxies are kept)."""

        async def check() -> bool | None:
            have = await self._proxies_once()
            return True if all(p.enabled and not p.toxics for p in have.values()) else None

        await self._confirm("reset", lambda: self._call("POST", "/reset"), check)

    # ---- toxics ------------------------------------------------------------------------------
    async def add_toxic(self, proxy: str, toxic: Toxic) -> ToxicState:
        body = toxic.model_dump()

        async def check() -> ToxicState | None:
            found = next((t for t in await self._toxics_once(proxy) if t.name == toxic.name), None)
            return found if found is not None and found.matches(toxic) else None

        return await self._confirm(
            f"add toxic {toxic.name!r} to proxy {proxy!r}",
            lambda: self._call("POST", f"/proxies/{proxy}/toxics", json=body, proxy=proxy, toxic=toxic.name),
            check,
            done_statuses={409},
        )

    async def remove_toxic(self, proxy: str, toxic_name: str, *, missing_ok: bool = False) -> bool:
        """Remove a toxic and confirm it is gone; True if it existed."""
        existed, tries = True, 0

        async def do() -> None:
            nonlocal existed, tries
            tries += 1
            path = f"/proxies/{proxy}/toxics/{toxic_name}"
            resp = await self._call("DELETE", path, proxy=proxy, toxic=toxic_name, allow={404} if missing_ok else set())
            if resp.is_success:
                return
            if "toxic" not in _detail(resp):  # the proxy itself is missing: never "ok"
                raise self._error(resp, f"DELETE {path}", proxy=proxy, toxic=toxic_name)
            if tries == 1:  # on a retry, 404 means an earlier try removed it
                existed = False

        async def check() -> bool | None:
            return None if any(t.name == toxic_name for t in await self._toxics_once(proxy)) else True

        await self._confirm(f"remove toxic {toxic_name!r} from proxy {proxy!r}", do, check, done_statuses={404})
        return existed

    # ---- plumbing ----------------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        proxy: str | None = None,
        toxic: str | None = None,
        allow: set[int] | frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """One HTTP call, its failures translated into our errors; statuses in `allow` are returned."""
        what = f"{method} {path}"
        try:
            resp = await self._http.request(method, path, json=json)
        except httpx.TimeoutException as exc:
            raise TargetUnreachable(
                f"Toxiproxy at {self.base_url} did not answer {what} within {self.timeout:g}s"
            ) from exc
        except httpx.ConnectError as exc:
            raise TargetUnreachable(
                f"cannot connect to Toxiproxy at {self.base_url}", hint="is its server running?"
            ) from exc
        except httpx.TransportError as exc:
            raise TargetUnreachable(
                f"Toxiproxy at {self.base_url} dropped {what}: {exc or type(exc).__name__}"
            ) from exc
        if resp.is_success or resp.status_code in allow:
            return resp
        raise self._error(resp, what, proxy=proxy, toxic=toxic)

    def _error(self, resp: httpx.Response, what: str, *, proxy: str | None, toxic: str | None) -> ToxiproxyError:
        status = resp.status_code
        detail = _detail(resp)
        here = f"Toxiproxy at {self.base_url}"
        if status == 404 and proxy is not None and "toxic" not in detail:
            return ToxiproxyError(
                f"{here} has no proxy {proxy!r}",
                status=404,
                hint="`pushctl stack up` creates every link's proxy",
            )
        if status == 404 and toxic is not None:
            return ToxiproxyError(f"proxy {proxy!r} on {here} has no toxic {toxic!r}", status=404)
        if status == 409 and toxic is not None:
            return ToxiproxyError(f"proxy {proxy!r} on {here} already has a toxic named {toxic!r}", status=409)
        if status == 409 and proxy is not None:
            return ToxiproxyError(f"{here} already has a proxy named {proxy!r}", status=409)
        return ToxiproxyError(f"{here} refused {what}: {detail} (HTTP {status})", status=status)

    def _parse(self, adapter: TypeAdapter[T], resp: httpx.Response) -> T:
        try:
            return adapter.validate_json(resp.content)
        except ValidationError as exc:
            raise ToxiproxyError(
                f"Toxiproxy at {self.base_url} sent an unexpected answer to {resp.request.method} "
                f"{resp.request.url.path}: {exc.errors()[0]['msg']}",
                status=resp.status_code,
            ) from None

    async def _pause(self, attempt: int, error: PushctlError | None) -> None:
        if attempt:
            log.warning("retrying a Toxiproxy call on %s after: %s", self.base_url, error)
            await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        last: PushctlError | None = None
        for attempt in range(self._attempts - 1):
            await self._pause(attempt, last)
            try:
                return await call()
            except PushctlError as exc:
                if not exc.retriable:
                    raise
                last = exc
        await self._pause(self._attempts - 1, last)
        return await call()

    async def _confirm(
        self,
        describe: str,
        do: Callable[[], Awaitable[object]],
        check: Callable[[], Awaitable[T | None]],
        *,
        done_statuses: frozenset[int] | set[int] = frozenset(),
    ) -> T:
        """Run `do` until `check` reads back the wanted state (not None), at most `attempts` times.

        The state is checked even after a failed `do`: a call that timed out may have taken
        effect. A retry answered with a status in `done_statuses` (409 "exists", 404 "not
        found") means an earlier attempt did the work, so it is checked too, not raised.
        """
        last: PushctlError | None = None
        for attempt in range(self._attempts):
            await self._pause(attempt, last)
            try:
                await do()
            except PushctlError as exc:
                already = attempt > 0 and isinstance(exc, ToxiproxyError) and exc.status in done_statuses
                if not (exc.retriable or already):
                    raise
                last = exc
            try:
                confirmed = await check()
            except PushctlError as exc:
                if not exc.retriable:
                    raise
                last = exc
                continue
            if confirmed is not None:
                return confirmed
        raise self._unconfirmed(describe, last)

    def _unconfirmed(self, describe: str, last: PushctlError | None) -> PushctlError:
        head = f"{describe}: Toxiproxy at {self.base_url} did not confirm it after {self._attempts} attempts"
        if last is None:
            return ToxiproxyError(f"{head}; its state reads back differently", status=None)
        if isinstance(last, ToxiproxyError):
            err: PushctlError = ToxiproxyError(f"{head}: {last.message}", status=last.status, hint=last.hint)
        else:
            err = TargetUnreachable(f"{head}: {last.message}", hint=last.hint)
        err.__cause__ = last
        return err


def _same_addr(have: str, want: str) -> bool:
    """Whether Toxiproxy's reported listen address is the one asked for.

    Toxiproxy reports the bound address, so `localhost:18201` reads back as `127.0.0.1:18201`
    and port 0 as the port it picked.
    """
    if have == want:
        return True
    h_host, _, h_port = have.rpartition(":")
    w_host, _, w_port = want.rpartition(":")
    if w_port not in ("0", h_port):
        return False
    return h_host == w_host or not (_is_ip(h_host) and _is_ip(w_host))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _detail(resp: httpx.Response) -> str:
    """The `error` of a Toxiproxy error body, or the text of a body that is not one."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    text = str(body["error"]) if isinstance(body, dict) and "error" in body else resp.text
    return text.strip()[:200] or resp.reason_phrase
