"""Run a producer a few items ahead of its consumer, on a thread of its own.

The agent's work alternates between waiting on the server and encoding or writing data;
overlapping the two keeps the server busy. Memory is bounded by `depth` items.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def read_ahead(items: Iterator[T], depth: int, *, name: str) -> Iterator[T]:
    """Yield `items`, produced on a thread up to `depth` ahead. An exception in the
    producer is raised here; stopping early stops the producer at its next item."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(ready, item, stop):
                    return
            _put(ready, _DONE, stop)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            _put(ready, _Failure(error), stop)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]  # everything else on the queue came from `items`
    finally:
        stop.set()
        thread.join()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(ready: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Queue `item` unless the consumer has stopped; False if it has."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False
