"""The agent and the broker tune the cyclic collector at start (kernel/gc_tuning.py): start-up objects frozen,
thresholds raised, and reference cycles still collected."""

from __future__ import annotations

import gc
import weakref

from kernel.gc_tuning import YOUNG_THRESHOLD, tune_for_service


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_thresholds_raised_startup_frozen_and_cycles_still_collected() -> None:
    before = gc.get_threshold()
    try:
        assert tune_for_service() == before
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        junk = [[] for _ in range(YOUNG_THRESHOLD * 2)]  # enough container allocations for a young pass
        del junk
        gc.collect(0)
        assert alive() is None, "a reference cycle made after the tuning was never collected"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
