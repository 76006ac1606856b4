"""Relaying notifications to the open pages: one bounded queue per Server-Sent Events client."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

CLIENT_QUEUE = 500  # a page this far behind is cut off; it reconnects and reloads its snapshot
PING_S = 10.0  # keeps proxies from closing an idle stream and lets the page notice a dead one
RETRY_MS = 2000  # what the browser waits before reconnecting on its own


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sse(event: str, data: Any) -> str:
    """One Server-Sent Events message."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass(eq=False)
class _Client:
    device: str | None  # None: every meter (the overview)
    # Which devices this page may see (the caller's scope, access/: Identity.owns); None: every device. A
    # message about any other device never enters this page's queue.
    sees: Callable[[str], bool] | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))


@dataclass
class LiveHub:
    """Fans readings and events out to every connected page that wants them."""

    clients: set[_Client] = field(default_factory=set)
    relayed: int = 0
    cut_off: int = 0

    def publish(self, event: str, device: str, data: dict[str, Any]) -> None:
        message = sse(event, data)
        for client in list(self.clients):
            if client.device is not None and client.device != device:
                continue
            if client.sees is not None and not client.sees(device):
                continue
            try:
                client.queue.put_nowait(message)
                self.relayed += 1
            except asyncio.QueueFull:
                # Dropping silently would leave a page showing old values as if live; cutting it off makes
                # the browser reconnect and reload a fresh snapshot.
                self.cut_off += 1
                log.warning("page stream for %s is %d messages behind; closing it so it reconnects",
                            client.device or "overview", CLIENT_QUEUE)
                self._end(client)

    def close_all(self) -> None:
        """End every open stream (the service is stopping)."""
        for client in list(self.clients):
            self._end(client)

    def _end(self, client: _Client) -> None:
        self.clients.discard(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)

    async def stream(self, device: str | None, sees: Callable[[str], bool] | None = None) -> AsyncIterator[str]:
        """The messages of one page: `hello` first, then readings/events as they come, `ping` when idle.

        `sees`: the caller's scope (a member's own meters); messages about other devices are never queued."""
        client = _Client(device, sees)
        self.clients.add(client)
        try:
            yield f"retry: {RETRY_MS}\n" + sse("hello", {"serverTime": now_iso(), "device": device})
            while True:
                try:
                    message = await asyncio.wait_for(client.queue.get(), timeout=PING_S)
                except TimeoutError:
                    yield sse("ping", {"serverTime": now_iso()})
                    continue
                if message is None:
                    return
                yield message
        finally:
            self.clients.discard(client)
