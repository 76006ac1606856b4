"""A small HTTP/1.1 client for notifications: one kept-alive connection per subscription.

Notifications are small POSTs sent one at a time per subscription; httpx spent most of the notifier's CPU in its
generic machinery (profiled with py-spy: ~80% of the event loop during a 10-subscriber run). This client does
only what a notification needs: POST with Content-Length, read the status, drain a Content-Length, chunked or
close-delimited body, reuse the connection unless the receiver closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

CLOSE_TIMEOUT_S = 1.0


class NotifyError(Exception):
    """The receiver could not be reached or answered something that is not HTTP."""


class Connection:
    """A kept-alive connection to one notification endpoint (not shared between tasks)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotifyError(f"not an http(s) URL: {url}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._authority = parts.netloc.rsplit("@", 1)[-1]
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        """POST the body; the HTTP status. One retry on a fresh connection if a kept-alive one was stale."""
        for attempt in range(2):
            fresh = self._writer is None
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives as the
                # exchange completes, leaving the sender task running after shutdown cancelled it
                async with asyncio.timeout(self._timeout_s):
                    return await self._exchange(body, headers)
            except (OSError, asyncio.IncompleteReadError, NotifyError, TimeoutError) as exc:
                await self.close()
                if fresh or attempt == 1 or isinstance(exc, TimeoutError):
                    raise NotifyError(f"{type(exc).__name__}: {exc}") from None
        raise NotifyError("unreachable")  # pragma: no cover

    async def _exchange(self, body: bytes, headers: dict[str, str]) -> int:
        if self._writer is None:
            context = ssl.create_default_context() if self._tls else None
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port, ssl=context)
        assert self._reader is not None
        lines = [f"POST {self._target} HTTP/1.1", f"Host: {self._authority}", f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await self._writer.drain()
        status_line = await self._reader.readline()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise NotifyError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = close = False
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            while True:
                size = int((await self._reader.readline()).split(b";")[0].strip() or b"0", 16)
                await self._reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await self._reader.readexactly(length)
        elif status not in (204, 304) and not 100 <= status < 200:
            await self._reader.read()  # close-delimited body
            close = True
        if close or parts[0] == b"HTTP/1.0":
            await self.close()
        return status

    async def close(self) -> None:
        """Close the connection (the next post opens a new one)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):  # a receiver that stopped reading must not hold up shutdown
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await writer.wait_closed()
