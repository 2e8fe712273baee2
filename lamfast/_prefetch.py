"""Run an iterator on a background thread, a bounded number of items ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_ITEM, _DONE, _ERROR = range(3)


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Yield the items of ``items``, produced on a background thread.

    At most ``depth`` finished items wait in the queue (plus the one being produced), so
    memory stays bounded. An exception in the producer is re-raised in the consumer;
    closing the generator early (break, exception) stops the producer after its current item.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind, value) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put(_ITEM, item):
                    return
            put(_DONE, None)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(_ERROR, e)

    thread = threading.Thread(target=produce, name="lamfast-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == _DONE:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
