"""Latest-frame queues between pipeline stages.

A camera does not wait for a slow consumer, so a queue between two stages holds one or two items:
a put on a full queue drops the stalest item and counts the drop. Latency then stays bounded by
the slowest stage instead of growing with a backlog. Inputs that must not lose frames (a video
file processed offline) use `put_wait`, which applies back-pressure instead of dropping.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestQueue(Generic[T]):
    """A bounded, thread-safe FIFO that drops its stalest item when full."""

    def __init__(self, maxsize: int = 1, name: str = ""):
        if maxsize < 1:
            raise ValueError("a queue holds at least one item")
        self.maxsize = maxsize
        self.name = name
        self.dropped = 0
        """Items discarded because a newer one arrived while the queue was full."""
        self._items: deque[T] = deque()
        self._cond = threading.Condition()

    def put(self, item: T) -> T | None:
        """Add `item` without blocking; when full, drop the stalest item and return it."""
        with self._cond:
            stale = None
            if len(self._items) >= self.maxsize:
                stale = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return stale

    def put_wait(self, item: T, timeout: float) -> bool:
        """Add `item` once there is room; False (nothing added) if none came within `timeout`."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) < self.maxsize, timeout):
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> T | None:
        """The oldest item, or None when nothing arrived within `timeout`."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) > 0, timeout):
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
