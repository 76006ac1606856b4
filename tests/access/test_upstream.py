"""The PEP's forwarding leg against a raw HTTP/1.1 server: chunked answers, Connection: close, an idle
connection the upstream closed (retried on a fresh one), and an upstream that is down (UpstreamError)."""

from __future__ import annotations

import asyncio

import pytest

from access._upstream import Upstream, UpstreamError


async def _serve(answers: list[bytes], close_after: int | None = None):
    """A server answering each request with the next of `answers`; closes a connection after `close_after`."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            seen.append(head + await reader.readexactly(length))
            writer.write(answers[min(len(seen), len(answers)) - 1])
            await writer.drain()
            served += 1
            if close_after is not None and served >= close_after:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


def test_chunked_close_and_stale_connections():
    async def run() -> None:
        chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n" \
                  b"4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n"
        plain = b"HTTP/1.1 201 Created\r\nlocation: /x/1\r\ncontent-length: 0\r\n\r\n"
        server, url, seen = await _serve([chunked, plain, plain], close_after=1)
        up = Upstream(url)
        first = await up.request("GET", "/a?b=1", [(b"accept", b"application/json")], b"")
        assert first.status == 200 and first.body == b"[1,2,3]"
        assert all(k != b"transfer-encoding" for k, _ in first.headers)
        await asyncio.sleep(0.05)  # the server closed that connection after one answer: the pool's is stale
        second = await up.request("POST", "/x", [], b'{"id":"a"}')
        assert second.status == 201 and second.header(b"location") == b"/x/1"
        assert seen[0].startswith(b"GET /a?b=1 HTTP/1.1\r\n") and seen[-1].endswith(b'{"id":"a"}')
        assert len(seen) == 2  # the stale connection never carried the POST
        await up.aclose()
        server.close()
        with pytest.raises(UpstreamError):
            await Upstream(url).request("GET", "/", [], b"")

    asyncio.run(run())
