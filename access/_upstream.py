"""The PEP's forwarding leg: HTTP/1.1 (RFC 9112) to the upstream over a pool of kept-alive connections.

A reverse proxy forwards bytes; it does not consume the NGSI-LD API (that is fiware_client's job), so this is not
a broker client but the proxy's transport. It is written against asyncio streams rather than httpx because the
profile of the PEP under batch ingest put half of its CPU in httpx/httpcore's layers (auth, redirects, anyio
streams, header validation) for requests that need none of them: here a request is one `write` of the head and
body, and a response is read with `readuntil`/`readexactly` (Content-Length or chunked, RFC 9112 §6-7).

- Connections are reused while the upstream keeps them open (`Connection: close` or an error drops one). A pooled
  connection the upstream closed while idle fails before any byte of the answer arrives; that request is sent
  once more on a fresh connection (safe: the upstream never read it), any other failure is the caller's.
- `https://` upstreams go through httpx (TLS and its edge cases are not worth re-doing here).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

_NO_BODY_STATUS = {204, 304}
_MAX_HEAD = 64 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or answered something that is not HTTP/1.1."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-cased
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class _Stale(Exception):
    """A pooled connection was found closed before the answer began (retry on a fresh one)."""


@dataclass
class Upstream:
    base_url: str
    timeout_s: float = 30.0
    max_idle: int = 64
    _idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    _httpx: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.encode("latin-1")
        if self.scheme not in ("http", "https"):
            raise ValueError(f"upstream {self.base_url!r}: only http:// or https:// URLs")

    async def request(self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Answer:
        """Send `method target` (path and query, already encoded) with `headers` (no hop-by-hop ones) and `body`."""
        if self.scheme == "https":
            return await self._via_httpx(method, target, headers, body)
        head = [f"{method} {self.prefix}{target} HTTP/1.1\r\nhost: ".encode("latin-1"), self.host_header,
                b"\r\ncontent-length: ", str(len(body)).encode()]
        for name, value in headers:
            head += (b"\r\n", name, b": ", value)
        head.append(b"\r\n\r\n")
        # Head and body go as two buffers of one write (uvloop: one writev, the body is not copied; asyncio joins
        # them): one segment, never a head and a body in two.
        payload = (b"".join(head), body) if body else (b"".join(head),)
        for attempt in (0, 1):
            pooled = bool(self._idle) and attempt == 0
            reader, writer = self._idle.pop() if pooled else await self._connect()
            try:
                # asyncio.timeout (3.11) rather than wait_for, which wraps the exchange in a task of its own
                async with asyncio.timeout(self.timeout_s):
                    answer, keep = await self._exchange(reader, writer, payload, method, pooled)
            except _Stale:
                writer.close()
                continue
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                    TimeoutError) as exc:
                writer.close()
                raise UpstreamError(f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
            if keep and len(self._idle) < self.max_idle:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return answer
        raise UpstreamError(f"{self.base_url}: the connection closed before answering, twice")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(self.host, self.port, limit=_MAX_HEAD),
                                          self.timeout_s)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"{self.base_url}: cannot connect: {exc}") from exc

    @staticmethod
    async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: tuple[bytes, ...],
                        method: str, pooled: bool) -> tuple[Answer, bool]:
        try:
            writer.writelines(payload)
            await writer.drain()
            raw = await reader.readuntil(b"\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            if pooled and (not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial):
                raise _Stale from exc
            raise
        lines = raw[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = int(rest[:3])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        keep = version == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        for name, value in headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                token = value.lower()
                keep = (keep and b"close" not in token) or b"keep-alive" in token
        if method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
            body = b""
        elif chunked:
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
            headers = [(k, v) for k, v in headers if k != b"transfer-encoding"]
        elif length is not None:
            body = await reader.readexactly(length)
        else:  # neither: the body runs to the end of the connection
            body = await reader.read()
            keep = False
        return Answer(status, headers, body), keep

    async def _via_httpx(self, method: str, target: str, headers: list[tuple[bytes, bytes]],
                         body: bytes) -> Answer:
        if self._httpx is None:
            self._httpx = httpx.AsyncClient(timeout=self.timeout_s)
        try:
            answer = await self._httpx.request(method, self.base_url + target, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.base_url}: {exc}") from exc
        return Answer(answer.status_code, [(k.lower(), v) for k, v in answer.headers.raw
                                           if k.lower() not in (b"content-encoding", b"transfer-encoding")],
                      answer.content)

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
        if self._httpx is not None:
            with contextlib.suppress(Exception):
                await self._httpx.aclose()
