"""Faults on the inventory's named links, across all its Toxiproxy servers.

Every fault verb is planned first (`plan_fault`, `plan_link_down`: pure, validated, serializable
so it can be journaled) and then applied (`apply_fault`); `revert_fault` undoes one. The results
say what happened to connections already open, because Toxiproxy does not reliably apply a new
toxic to them (#148): only a reset (disable + enable, closing every connection) guarantees it.

    spec = plan_fault(inv, "device-north", "latency", {"latency": 200}, stream=Stream.BOTH)
    result = await apply_fault(spec)
    ...
    await revert_fault(spec)
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from pushctl.contract.topology import Inventory, Link
from pushctl.errors import PushctlError, RollbackFailed, TargetUnreachable, ToxiproxyError, UsageError
from pushctl.faults.toxics import Stream, build_toxics, summarize
from pushctl.faults.toxiproxy import ProxyChange, ProxyState, Toxic, ToxicState, ToxiproxyClient
from pushctl.runtime.base import LinkStatus

R = TypeVar("R")
log = logging.getLogger(__name__)
Transport = httpx.AsyncBaseTransport | None

NEW_CONNECTIONS_ONLY = (
    "applies to new connections; open connections may not see it (Toxiproxy #148) "
    "- use --reset-connections to close them so clients reconnect through the fault"
)
CONNECTIONS_RESET = "every open connection through the link was closed, so clients reconnect through the fault"
LINK_WAS_DOWN = "the link is down, so no connection is open through it"
DOWN_CLOSES_ALL = "every open connection through the link was closed; new connections are refused until it is up"
UP_ACCEPTS = "the link accepts connections again"


class FaultSpec(BaseModel):
    """One planned fault: what `apply_fault` will do and `revert_fault` will undo."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["add", "down"]
    link: str
    toxiproxy: str
    url: str
    toxics: tuple[Toxic, ...] = ()
    reset_connections: bool = False

    def describe(self) -> str:
        if self.action == "down":
            return f"take link {self.link} down"
        reset = ", then reset its connections" if self.reset_connections else ""
        return f"add {', '.join(summarize(t) for t in self.toxics)} to link {self.link}{reset}"


@dataclass(frozen=True)
class FaultResult:
    """What one fault verb did to one link."""

    link: str
    action: Literal["add", "down", "up", "clear", "reset", "revert"]
    enabled: bool
    connections: str
    added: tuple[ToxicState, ...] = ()
    removed: tuple[str, ...] = ()
    caution: bool = False  # open connections may not behave as the user expects
    changed: bool = True

    @property
    def summaries(self) -> list[str]:
        return [summarize(t) for t in self.added]

    def to_json(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "action": self.action,
            "enabled": self.enabled,
            "added": _toxics_json(self.added),
            "removed": list(self.removed),
            "connections": self.connections,
            "changed": self.changed,
        }


@dataclass(frozen=True)
class LinkFaults:
    """One link as its Toxiproxy server reports it; `error` says why it could not be read."""

    link: str
    toxiproxy: str
    url: str
    enabled: bool | None = None
    toxics: tuple[ToxicState, ...] = ()
    error: str | None = None

    @property
    def summaries(self) -> list[str]:
        return [summarize(t) for t in self.toxics]

    def to_json(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "toxiproxy": self.toxiproxy,
            "url": self.url,
            "enabled": self.enabled,
            "toxics": _toxics_json(self.toxics),
            "error": self.error,
        }


# ---- plan ------------------------------------------------------------------------------------
def plan_fault(
    inv: Inventory,
    link: str,
    kind: str,
    attrs: Mapping[str, object],
    stream: Stream | str = Stream.DOWN,
    toxicity: float = 1.0,
    name: str | None = None,
    reset_connections: bool = False,
) -> FaultSpec:
    """Validate a toxic fault on `link` without touching the network."""
    lk = inv.link(link)
    toxics = build_toxics(kind, attrs, stream=stream, toxicity=toxicity, name=name)
    return FaultSpec(
        action="add",
        link=lk.name,
        toxiproxy=lk.toxiproxy,
        url=inv.toxiproxy[lk.toxiproxy].url,
        toxics=toxics,
        reset_connections=reset_connections,
    )


def plan_link_down(inv: Inventory, link: str) -> FaultSpec:
    lk = inv.link(link)
    return FaultSpec(action="down", link=lk.name, toxiproxy=lk.toxiproxy, url=inv.toxiproxy[lk.toxiproxy].url)


# ---- apply / revert --------------------------------------------------------------------------
async def apply_fault(spec: FaultSpec, *, transport: Transport = None) -> FaultResult:
    """Apply a planned fault. Toxics are all-or-nothing: if one fails, those added are removed."""
    async with ToxiproxyClient(spec.url, transport=transport) as tp:
        if spec.action == "down":
            await tp.set_enabled(spec.link, False)
            return FaultResult(spec.link, "down", False, DOWN_CLOSES_ALL, caution=True)
        have = {t.name for t in await tp.toxics(spec.link)}
        clash = [t.name for t in spec.toxics if t.name in have]
        if clash:
            raise UsageError(
                f"link {spec.link} already has toxic {', '.join(clash)}",
                hint=f"pick another --name, or remove it: pushctl fault clear {spec.link}",
            )
        added: list[ToxicState] = []
        try:
            for toxic in spec.toxics:
                added.append(await tp.add_toxic(spec.link, toxic))
        except BaseException as exc:
            # every name of the spec: none existed before (checked above), and a call that
            # failed by timing out may still have added its toxic
            await _undo_partial(tp, spec.link, [t.name for t in spec.toxics], exc)
            raise
        if not spec.reset_connections:
            return FaultResult(spec.link, "add", True, NEW_CONNECTIONS_ONLY, added=tuple(added), caution=True)
        enabled, note = await _cycle(tp, spec.link)
        return FaultResult(spec.link, "add", enabled, note, added=tuple(added))


async def revert_fault(spec: FaultSpec, *, transport: Transport = None) -> FaultResult:
    """Undo `spec`: remove its toxics, or bring its link back up. Safe to run twice."""
    async with ToxiproxyClient(spec.url, transport=transport) as tp:
        if spec.action == "down":
            await tp.set_enabled(spec.link, True)
            return FaultResult(spec.link, "revert", True, UP_ACCEPTS)
        gone = [t for t in spec.toxics if await tp.remove_toxic(spec.link, t.name, missing_ok=True)]
        state = await tp.proxy(spec.link)
        names = tuple(t.name for t in gone)
        return FaultResult(spec.link, "revert", state.enabled, _removed_note(gone), removed=names, changed=bool(gone))


# ---- the verbs -------------------------------------------------------------------------------
async def add_fault(
    inv: Inventory,
    link: str,
    kind: str,
    attrs: Mapping[str, object],
    stream: Stream | str = Stream.DOWN,
    toxicity: float = 1.0,
    name: str | None = None,
    reset_connections: bool = False,
    *,
    transport: Transport = None,
) -> FaultResult:
    spec = plan_fault(inv, link, kind, attrs, stream, toxicity, name, reset_connections)
    return await apply_fault(spec, transport=transport)


async def link_down(inv: Inventory, link: str, *, transport: Transport = None) -> FaultResult:
    """Disable the link's proxy: its listener closes, and so does every open connection."""
    return await apply_fault(plan_link_down(inv, link), transport=transport)


async def link_up(inv: Inventory, link: str, *, transport: Transport = None) -> FaultResult:
    lk = inv.link(link)
    async with _client(inv, lk, transport) as tp:
        await tp.set_enabled(lk.name, True)
    return FaultResult(lk.name, "up", True, UP_ACCEPTS)


async def reset_connections(inv: Inventory, link: str, *, transport: Transport = None) -> FaultResult:
    """Close every open connection through `link` (disable, then enable its proxy)."""
    lk = inv.link(link)
    async with _client(inv, lk, transport) as tp:
        enabled, note = await _cycle(tp, lk.name)
    return FaultResult(lk.name, "reset", enabled, note)


async def clear_faults(inv: Inventory, link: str | None = None, *, transport: Transport = None) -> list[FaultResult]:
    """Remove every toxic and re-enable the proxy, of one link or of all. Tries every link."""
    targets = [inv.link(link)] if link is not None else list(inv.links)

    async def clear(tp: ToxiproxyClient, lk: Link) -> FaultResult:
        state = await tp.proxy(lk.name)
        gone = [t for t in state.toxics if await tp.remove_toxic(lk.name, t.name, missing_ok=True)]
        removed = [t.name for t in gone]
        notes = [_removed_note(gone)] if gone else []
        if not state.enabled:
            await tp.set_enabled(lk.name, True)
            notes.append(UP_ACCEPTS)
        note = "; ".join(notes) or "no fault"
        return FaultResult(lk.name, "clear", True, note, removed=tuple(removed), changed=bool(notes))

    return _raise_failures("clear faults", await _for_links(inv, targets, clear, transport))


async def list_faults(inv: Inventory, *, transport: Transport = None) -> list[LinkFaults]:
    """Every link with its enabled flag and toxics; a link that cannot be read carries `error`."""
    by_server = await _per_server(inv, inv.links, transport)
    out = []
    for lk in inv.links:
        url = inv.toxiproxy[lk.toxiproxy].url
        proxies = by_server[lk.toxiproxy]
        if isinstance(proxies, PushctlError):
            out.append(LinkFaults(lk.name, lk.toxiproxy, url, error=str(proxies)))
        elif lk.name not in proxies:
            out.append(LinkFaults(lk.name, lk.toxiproxy, url, error=f"no proxy for this link on {url}"))
        else:
            p = proxies[lk.name]
            out.append(LinkFaults(lk.name, lk.toxiproxy, url, p.enabled, p.toxics))
    return out


async def link_statuses(inv: Inventory, *, transport: Transport = None) -> list[LinkStatus]:
    """Every link for `pushctl stack status`: present, enabled, toxic names. Never raises."""
    by_server = await _per_server(inv, inv.links, transport)
    out = []
    for lk in inv.links:
        proxies = by_server[lk.toxiproxy]
        p = None if isinstance(proxies, PushctlError) else proxies.get(lk.name)
        host, port = inv.link_addr(lk.name)
        out.append(
            LinkStatus(
                name=lk.name,
                kind=lk.kind.value,
                toxiproxy=lk.toxiproxy,
                listen=f"{host}:{port}",
                upstream=lk.upstream_addr,
                present=p is not None,
                enabled=p is not None and p.enabled,
                toxics=[t.name for t in p.toxics] if p is not None else [],
            )
        )
    return out


# ---- the links themselves --------------------------------------------------------------------
async def sync_links(inv: Inventory, *, transport: Transport = None) -> list[ProxyChange]:
    """Create or refresh every link's proxy (listen, upstream, enabled). Toxics are left alone."""

    async def ensure(tp: ToxiproxyClient, lk: Link) -> ProxyChange:
        host, port = inv.link_addr(lk.name)
        return await tp.ensure_proxy(lk.name, f"{host}:{port}", lk.upstream_addr, enabled=True)

    return _raise_failures("sync links", await _for_links(inv, inv.links, ensure, transport))


async def remove_links(inv: Inventory, *, transport: Transport = None) -> list[str]:
    """Delete every link's proxy; returns the names of those that existed."""

    async def delete(tp: ToxiproxyClient, lk: Link) -> bool:
        return await tp.delete_proxy(lk.name, missing_ok=True)

    done = _raise_failures("remove links", await _for_links(inv, inv.links, delete, transport))
    return [lk.name for lk, existed in zip(inv.links, done, strict=True) if existed]


# ---- plumbing --------------------------------------------------------------------------------
def _client(inv: Inventory, lk: Link, transport: Transport) -> ToxiproxyClient:
    return ToxiproxyClient(inv.toxiproxy[lk.toxiproxy].url, transport=transport)


async def _cycle(tp: ToxiproxyClient, proxy: str) -> tuple[bool, str]:
    """Disable then re-enable `proxy`, closing its open connections; a down link stays down."""
    if not (await tp.proxy(proxy)).enabled:
        return False, LINK_WAS_DOWN
    try:
        await tp.set_enabled(proxy, False)
    finally:
        try:
            await tp.set_enabled(proxy, True)
        except PushctlError as exc:
            raise _reworded(
                exc,
                f"link {proxy} was left DOWN after resetting its connections: {exc.message}",
                hint=f"bring it back: pushctl fault up {proxy}",
            ) from exc
    return True, CONNECTIONS_RESET


async def _undo_partial(tp: ToxiproxyClient, proxy: str, names: Sequence[str], cause: BaseException) -> None:
    """Remove what a failed `apply_fault` added, so a fault is never half-applied."""
    left = []
    for name in names:
        try:
            await tp.remove_toxic(proxy, name, missing_ok=True)
        except PushctlError as exc:
            log.warning("could not remove toxic %s from %s: %s", name, proxy, exc)
            left.append(name)
    if left:
        raise RollbackFailed(
            f"adding a fault to link {proxy} failed ({cause}) and toxic {', '.join(left)} could not be removed",
            hint=f"remove it: pushctl fault clear {proxy}",
        ) from cause


def _reworded(exc: PushctlError, message: str, *, hint: str | None) -> PushctlError:
    """`exc` with a new message: same class, status and `retriable`."""
    new = copy.copy(exc)
    new.message, new.hint, new.args = message, hint, (message,)
    return new


def _toxics_json(toxics: Sequence[ToxicState]) -> list[dict[str, Any]]:
    """Toxics as `--json` shows them: Toxiproxy's fields and our one-line summary of each."""
    return [t.model_dump() | {"summary": summarize(t)} for t in toxics]


def _removed_note(removed: Sequence[Toxic]) -> str:
    if not removed:
        return "no toxic to remove"
    note = f"removed {', '.join(t.name for t in removed)}"
    if any(t.type == "timeout" for t in removed):
        note += "; the connections its timeout toxic held were closed"
    return note


async def _for_links(
    inv: Inventory,
    links: Sequence[Link],
    op: Callable[[ToxiproxyClient, Link], Awaitable[R]],
    transport: Transport,
) -> list[tuple[Link, R | PushctlError]]:
    """`op` on every link: one client per server, servers in parallel, links of a server in turn."""
    results: dict[str, R | PushctlError] = {}

    async def server(name: str, group: list[Link]) -> None:
        async with ToxiproxyClient(inv.toxiproxy[name].url, transport=transport) as tp:
            for lk in group:
                try:
                    results[lk.name] = await op(tp, lk)
                except PushctlError as exc:
                    results[lk.name] = exc

    groups: dict[str, list[Link]] = {}
    for lk in links:
        groups.setdefault(lk.toxiproxy, []).append(lk)
    await _all([server(name, group) for name, group in groups.items()])
    return [(lk, results[lk.name]) for lk in links]


async def _per_server(
    inv: Inventory, links: Sequence[Link], transport: Transport
) -> dict[str, dict[str, ProxyState] | PushctlError]:
    """`GET /proxies` once on every server the links use."""
    out: dict[str, dict[str, ProxyState] | PushctlError] = {}

    async def read(name: str) -> None:
        async with ToxiproxyClient(inv.toxiproxy[name].url, transport=transport) as tp:
            try:
                out[name] = await tp.proxies()
            except PushctlError as exc:
                out[name] = exc

    await _all([read(name) for name in dict.fromkeys(lk.toxiproxy for lk in links)])
    return out


async def _all(coros: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run `coros` concurrently; an unexpected error surfaces as itself, not as an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as tg:
            for coro in coros:
                tg.create_task(coro)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from group


def _raise_failures(what: str, results: list[tuple[Link, R | PushctlError]]) -> list[R]:
    """The results, or one error naming every link that failed (after all were tried)."""
    failed = [(lk, r) for lk, r in results if isinstance(r, PushctlError)]
    if not failed:
        return [r for _, r in results if not isinstance(r, PushctlError)]
    if len(failed) == 1:
        raise failed[0][1]
    ok = len(results) - len(failed)
    detail = "; ".join(f"{lk.name}: {err}" for lk, err in failed)
    message = f"{what} failed on {len(failed)} links ({ok} done): {detail}"
    if all(isinstance(err, TargetUnreachable) for _, err in failed):
        raise ToxiproxyError(message, status=None)
    raise PushctlError(message)
