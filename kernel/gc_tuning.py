"""The cyclic garbage collector tuned for a long-running ingest service (the broker, the agent).

Why: CPython's cyclic collector runs a young-generation pass every 700 net container allocations (dicts, lists,
objects) and an older pass every 10 of those. Reference counting already frees almost everything a request
builds (a meter message becomes ~30 small attribute dicts, each freed when the batch is answered); the collector
exists only for reference cycles. At 1,000 meters x 1 Hz the broker allocates millions of containers a minute,
so the default thresholds ran a collection every few hundred microseconds of work, each pass also walking the
survivors (caches, the subscription state, the loaded modules). Measured in-process on the firmware's message
(2026-12-07, `docs/performance.md` "Ingest, third round"): parsing and writing a batch cost x0.75 of the CPU
with the tuning below, the same as with the collector switched off.

What: `gc.freeze()` moves everything alive after start-up (modules, contexts, caches filled so far) into a
permanent generation that collections no longer walk, and the thresholds let the young generation grow to
50,000 objects before a pass. Cycles are still collected (memory stays bounded); they live a little longer.
Python documents both calls: https://docs.python.org/3/library/gc.html (`freeze`, `set_threshold`).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # container allocations between young-generation passes (CPython's default: 700)
MIDDLE_THRESHOLD = 20  # young passes per middle-generation pass (default 10)
OLD_THRESHOLD = 10  # middle passes per full pass (default 10); CPython also waits for 25 % new long-lived objects


def tune_for_service() -> tuple[int, int, int]:
    """Freeze what start-up built and raise the collection thresholds; returns the previous thresholds."""
    previous = gc.get_threshold()
    gc.collect()  # start-up garbage goes first, so it is not frozen for good
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    return previous
