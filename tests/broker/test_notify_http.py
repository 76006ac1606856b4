"""The notifier's HTTP client against a real HTTP/1.1 server: keep-alive, chunked and sized bodies, errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from twin_service.broker._notify_http import Connection, NotifyError
from twin_service.mqtt_server import free_port

SEEN: list[tuple[str, bytes, str]] = []


async def sized(request: Request) -> Response:
    SEEN.append((request.url.path, await request.body(), request.headers.get("x-key", "")))
    return Response(b"accepted", status_code=int(request.query_params.get("status", "200")))


async def chunked(request: Request) -> Response:
    SEEN.append((request.url.path, await request.body(), request.headers.get("x-key", "")))

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one", b"two", b"three"):
            yield part

    return StreamingResponse(parts(), status_code=200)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/sized", sized, methods=["POST"]), Route("/chunked", chunked, methods=["POST"])])
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def test_keep_alive_sized_and_chunked_bodies(server: str) -> None:
    async def run() -> list[int]:
        sized_conn = Connection(f"{server}/sized?status=201", timeout_s=5)
        chunked_conn = Connection(f"{server}/chunked", timeout_s=5)
        statuses = []
        for n in range(3):
            statuses.append(await sized_conn.post(b'{"n": %d}' % n, {"X-Key": "k", "Content-Type": "application/json"}))
            statuses.append(await chunked_conn.post(b"{}", {}))
        writer = sized_conn._writer
        statuses.append(await sized_conn.post(b"{}", {}))
        assert sized_conn._writer is writer  # the same connection was kept alive
        await sized_conn.close()
        await chunked_conn.close()
        return statuses

    SEEN.clear()
    assert asyncio.run(run()) == [201, 200, 201, 200, 201, 200, 201]
    assert SEEN[0] == ("/sized", b'{"n": 0}', "k") and SEEN[1][0] == "/chunked"


def test_error_status_and_unreachable(server: str) -> None:
    async def run() -> None:
        assert await Connection(f"{server}/sized?status=503", timeout_s=5).post(b"{}", {}) == 503
        with pytest.raises(NotifyError):
            await Connection(f"http://127.0.0.1:{free_port()}/none", timeout_s=2).post(b"{}", {})
        with pytest.raises(NotifyError):
            Connection("ftp://example.org/x", timeout_s=1)

    asyncio.run(run())
