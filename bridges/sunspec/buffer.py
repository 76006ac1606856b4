"""The bridge's offline buffer: readings kept while MQTT is down, replayed in order when it is back.

Bounded in memory (`max_messages`, oldest dropped first and counted: a week-long outage must not exhaust the
Raspberry Pi beside the inverter), and optionally saved to a JSON file on stop and loaded on start, so a
restart during an outage loses nothing that was kept. Replays go out as JSON arrays of measure objects on the
device's `/attrs` topic: the IoT Agent JSON's own shape for several measures at once, each with its TimeInstant,
so the twin's history gets every reading at the time it was taken.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class OfflineBuffer:
    """A bounded FIFO of (topic, measure object)."""

    def __init__(self, max_messages: int = 10_000, path: Path | None = None) -> None:
        self.max_messages = max_messages
        self.path = path
        self.dropped = 0
        self._items: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        if path is not None and path.exists():
            self._load(path)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, topic: str, measures: dict[str, Any]) -> None:
        with self._lock:
            if len(self._items) >= self.max_messages:
                self._items.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("offline buffer full (%d readings): dropped the oldest, %d so far",
                                self.max_messages, self.dropped)
            self._items.append((topic, measures))

    def take(self, limit: int = 100) -> list[tuple[str, list[dict[str, Any]]]]:
        """Up to `limit` readings, oldest first, one replay array per topic (each in time order).

        Order matters within a device's topic (its history); between devices it does not, so readings of
        several devices interleaved in the buffer still go out as one array per device.
        """
        with self._lock:
            taken = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for topic, measures in taken:
            grouped.setdefault(topic, []).append(measures)
        return list(grouped.items())

    def give_back(self, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """Put readings that could not be sent back at the front, in their order."""
        with self._lock:
            for topic, items in reversed(batches):
                for measures in reversed(items):
                    self._items.appendleft((topic, measures))
            while len(self._items) > self.max_messages:
                self._items.pop()
                self.dropped += 1

    def save(self) -> None:
        """Write what is kept to `path` (atomically); nothing to do without a path."""
        if self.path is None:
            return
        with self._lock:
            items = list(self._items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps([{"topic": t, "measures": m} for t, m in items]), encoding="utf-8")
        os.replace(tmp, self.path)
        if items:
            log.info("offline buffer: %d readings saved to %s", len(items), self.path)

    def _load(self, path: Path) -> None:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            items = [(entry["topic"], entry["measures"]) for entry in stored]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("offline buffer %s is unreadable (%s): starting empty, the file is kept as .bad", path, exc)
            path.replace(path.with_suffix(path.suffix + ".bad"))
            return
        for topic, measures in items[-self.max_messages:]:
            self._items.append((topic, measures))
        self.dropped += max(0, len(items) - self.max_messages)
        if items:
            log.info("offline buffer: %d readings loaded from %s", len(self._items), path)
