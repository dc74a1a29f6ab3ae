"""Start one service of the reference stack: `python -m pushstack.run NAME --inventory FILE`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import sys

from pushctl.contract.errors import PushctlError
from pushctl.contract.topology import ServiceKind, load_inventory

# service kind -> "module:Class"; imported lazily so one service does not load every other's deps
SERVICE_CLASSES: dict[ServiceKind, str] = {
    ServiceKind.DISKKV: "pushstack.diskkv:DiskKV",
    ServiceKind.SCHEDULER: "pushstack.scheduler:Scheduler",
    ServiceKind.DISPATCHER: "pushstack.dispatcher:Dispatcher",
    ServiceKind.BROKER: "pushstack.broker:Broker",
    ServiceKind.LOGIC: "pushstack.logic:LogicGateway",
    ServiceKind.ACCESS: "pushstack.access:AccessTier",
    ServiceKind.KVWRITER: "pushstack.kvwriter:KVWriter",
    ServiceKind.BYPASS: "pushstack.bypass:BypassConsumer",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pushstack-service", description=__doc__)
    parser.add_argument("name", help="service name in the inventory")
    parser.add_argument("--inventory", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        inv = load_inventory(args.inventory)
        spec = inv.service(args.name)
    except PushctlError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - a service's own stderr is its log
        sys.exit(2)
    target = SERVICE_CLASSES.get(spec.kind)
    if target is None:
        print(f"error: {args.name} is a {spec.kind.value}, not a push service", file=sys.stderr)  # noqa: T201 - a command-line report: printing is its job
        sys.exit(2)
    module, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    # what is loaded by now lives as long as the process: keep it out of every full collection
    gc.freeze()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(cls(inv, args.name).serve_forever())


if __name__ == "__main__":
    main()
