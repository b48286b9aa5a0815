"""The heap as it was before a batch, left out of the garbage collector's passes meanwhile.

A notebook's heap holds a few hundred thousand long-lived objects (pandas, the SDK's
types, pydantic's schemas), and each full pass of the collector walks them all: 60-75 ms
for ~140,000 objects on the machine the benchmarks ran on. A batch allocates enough to
set off such a pass every thousand rows or so; on a re-run answered from the cache one
pass costs as much as all the rows. Within :func:`frozen_heap` the objects that existed
before are in the collector's permanent generation (:func:`gc.freeze`), so its passes
walk only what the batch made; they are given back (:func:`gc.unfreeze`) when the last
batch running ends. Garbage made meanwhile is collected as usual; an old object that
becomes garbage in a reference cycle meanwhile is freed only after (so is the memory it
holds: with batches running back to back without end, never). A program that froze its
heap itself (before the batch, as before forking workers, or during it), or turned the
collector off, is left as it is.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]

_lock = threading.Lock()
_batches = 0
"""Batches running in this process (in any thread)."""
_froze = 0
"""How many objects the first of them froze (0: none; the last gives them back)."""


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within the block, the collector leaves the objects made before it alone."""
    global _batches, _froze
    with _lock:
        if _batches == 0 and gc.isenabled() and gc.get_freeze_count() == 0:
            gc.freeze()
            _froze = gc.get_freeze_count()
        _batches += 1
    try:
        yield
    finally:
        with _lock:
            _batches -= 1
            if _batches == 0 and _froze:
                # Frozen objects that die leave the count; a program that froze meanwhile
                # added every object it had: then the freeze is theirs to give back.
                if gc.get_freeze_count() <= _froze:
                    gc.unfreeze()
                _froze = 0
