"""Full garbage collections wait for their owner in processes holding thousands of connections."""

from __future__ import annotations

import gc
import logging

from pushctl.contract.gcpolicy import collect_fully, defer_full_collections


def test_deferred_full_collections_keep_young_ones_and_restore() -> None:
    before = gc.get_threshold()
    try:
        saved = defer_full_collections()
        assert saved == before
        gen0, gen1, gen2 = gc.get_threshold()
        assert (gen0, gen1) == before[:2]  # young collections unchanged
        assert gen2 > 10**8  # a full collection never comes by itself
    finally:
        gc.set_threshold(*before)


def test_collect_fully_reports_its_pause(caplog) -> None:  # type: ignore[no-untyped-def]
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()
    with caplog.at_level(logging.INFO, logger="test.gc"):
        pause = collect_fully(logging.getLogger("test.gc"))
    assert pause >= 0
    assert "full garbage collection" in caplog.text
