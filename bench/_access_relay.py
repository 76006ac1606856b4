"""The floor under any proxy's cost: a TCP byte relay with no HTTP, no token, no policy (bench only).

bench/access_overhead.py runs it as the `tcp-relay` variant in front of the same broker as the PEP: each client
connection gets its own upstream connection and bytes are copied both ways as they arrive. What it costs per
entity is what the extra hop itself costs (the loopback sends and receives and the event loop's wake-ups),
which no access layer written on the same event loop can go below. It is not a proxy to deploy: it neither
parses nor checks anything.

    python bench/_access_relay.py --upstream http://127.0.0.1:1026 --port 1099 [--loop uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
from urllib.parse import urlsplit


class _Pipe(asyncio.Protocol):
    """One side of a relayed connection: what arrives is written to the other side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


def serve(upstream: str, port: int) -> None:
    parts = urlsplit(upstream)
    host, up_port = parts.hostname or "127.0.0.1", parts.port or 80

    class _Client(_Pipe):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            asyncio.ensure_future(self._open())

        async def _open(self) -> None:
            loop = asyncio.get_running_loop()
            try:
                _, up = await loop.create_connection(_Pipe, host, up_port)
            except OSError:
                if self.transport is not None:
                    self.transport.close()
                return
            up.peer, self.peer = self, up
            for data in self.pending:
                up.transport.write(data)  # type: ignore[union-attr]
            self.pending.clear()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Client, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    serve(args.upstream, args.port)
