"""Real-time pacing: a live source never waits for the model, and frames never queue without bound.

A reader thread takes frames from the source at its own pace and leaves the newest one in a slot of
size one; when the model is still busy and another frame arrives, the waiting frame is dropped
("newest wins") and counted. The consumer always gets the freshest frame there is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class PacerStats:
    received: int = 0
    dropped: int = 0
    delivered: int = 0


class LatestFramePacer(Generic[T]):
    """Iterate over ``source`` from a background thread, delivering only the newest waiting item.

    ``on_drop`` is called (from the reader thread) with every item that was replaced before the
    consumer took it. Errors of the source are re-raised in the consumer; iteration ends with it.
    """

    def __init__(self, source: Iterable[T], on_drop: Callable[[T], None] | None = None):
        self.stats = PacerStats()
        self._source, self._on_drop = source, on_drop
        self._slot: list[T] = []
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="frame-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._source:
                if self._stop.is_set():
                    break
                with self._ready:
                    self.stats.received += 1
                    if self._slot:
                        self.stats.dropped += 1
                        if self._on_drop is not None:
                            self._on_drop(self._slot[0])
                    self._slot[:] = [item]
                    self._ready.notify()
        except BaseException as error:  # handed to the consumer, which decides
            self._error = error
        finally:
            with self._ready:
                self._done = True
                self._ready.notify()

    def __iter__(self) -> Iterator[T]:
        while True:
            with self._ready:
                while not self._slot and not self._done:
                    self._ready.wait(timeout=0.5)
                if self._slot:
                    item = self._slot.pop()
                    self.stats.delivered += 1
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
