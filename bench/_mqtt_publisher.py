"""A cheap load generator for the end-to-end benchmarks: MQTT 3.1.1 QoS 1 PUBLISH packets written to raw sockets.

Why: the simulated meters and the stack share the machine's two cores. The paho generator (`_e2e.LoadGenerator`)
spends ~0.2-0.3 ms of Python per message (packet objects, locks, a network thread per connection), which at
1,000 msg/s is a quarter of a core taken from the twin being measured. Here a message is the firmware payload
%-formatted into bytes, framed by hand (fixed header, remaining length, topic, packet id; MQTT 3.1.1 §3.3) and
appended to a buffer that is written with one `sendall` per connection and tick; a reader thread per connection
counts the PUBACKs (§3.4). Same meters, topics, payload bytes and QoS as the paho generator, so the broker, the
agent and the twin see the same traffic (`e2e_ingest.py --generator paho|raw` measures both).

What it leaves out, on purpose: keep-alive pings (CONNECT asks for none, keep alive 0), reconnection, QoS 2 and
retransmission. A message Mosquitto did not acknowledge shows up as `unacked` and in the loss count of the bench.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH_QOS1, PUBACK = 0x10, 0x20, 0x32, 0x40


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer (§2.2.3): 7 bits a byte, high bit = more follows."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str) -> bytes:
    """CONNECT, protocol level 4 (3.1.1), clean session, keep alive 0 (the server never times the client out)."""
    body = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _string(client_id)
    return bytes([CONNECT]) + remaining_length(len(body)) + body


class _Connection:
    """One TCP connection to the MQTT broker: buffered QoS 1 publishes, PUBACKs counted by a reader thread."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id))
        ack = self._read_exactly(4)
        if ack[0] != CONNACK or ack[3] != 0:
            raise ConnectionError(f"MQTT broker refused the connection: CONNACK {ack.hex()}")
        self.sock.settimeout(None)
        self.acked = 0
        self.sent = 0
        self._mid = 0
        self._chunks: list[bytes] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read_acks, name=f"raw-mqtt-acks-{client_id}", daemon=True)
        self._reader.start()

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = self.sock.recv(n - len(data))
            if not part:
                raise ConnectionError("MQTT broker closed the connection")
            data += part
        return data

    def _read_acks(self) -> None:
        """Count PUBACKs; the broker sends nothing else to a client that subscribed to nothing."""
        pending = b""
        try:
            while not self._closed:
                part = self.sock.recv(65536)
                if not part:
                    return
                pending += part
                # PUBACK is 4 bytes (0x40 0x02 mid mid); anything else would be a protocol error for this client
                whole = len(pending) - len(pending) % 4
                if whole:
                    if pending[0] != PUBACK:
                        raise ConnectionError(f"unexpected MQTT packet 0x{pending[0]:02x}")
                    self.acked += whole // 4
                    pending = pending[whole:]
        except OSError:
            return

    def add(self, topic: bytes, payload: bytes) -> None:
        """Frame one QoS 1 PUBLISH into the buffer (packet ids cycle 1..65535; QoS 1 ids are not tracked by the
        receiver once acknowledged, §4.3.2)."""
        self._mid = self._mid % 65535 + 1
        length = len(topic) + 2 + len(payload)  # topic is length-prefixed already
        self._chunks.append(b"%c%s%s%s%s" % (PUBLISH_QOS1, remaining_length(length), topic,
                                              struct.pack("!H", self._mid), payload))
        self.sent += 1

    def flush(self) -> None:
        if self._chunks:
            data, self._chunks = b"".join(self._chunks), []
            self.sock.sendall(data)

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@dataclass
class RawLoadGenerator:
    """Drop-in for `_e2e.LoadGenerator` (same `connect`, `run`, `close`, `current`, `published`)."""

    host: str
    port: int
    apikey: str
    device_ids: list[str]
    template: str
    connections: int = 4
    conns: list[_Connection] = field(default_factory=list)
    published: int = 0
    current: int = 0

    def connect(self) -> None:
        for n in range(self.connections):
            self.conns.append(_Connection(self.host, self.port, f"bench-raw-{os.getpid()}-{n}"))
        self.topics = [_string(f"/json/{self.apikey}/{d}/attrs") for d in self.device_ids]
        self._template = self.template.encode()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()

    @property
    def unacked(self) -> int:
        return sum(c.sent - c.acked for c in self.conns)

    def run(self, meters: int, rate_hz: float, seconds: float, stop: threading.Event | None = None
            ) -> tuple[int, float, float]:
        """`meters` x `rate_hz` for `seconds`, each meter once per period at its own offset (as LoadGenerator);
        returns (messages published, first publish time, last publish time) once Mosquitto acknowledged them."""
        total_rate = meters * rate_hz
        total = int(total_rate * seconds)
        conns, topics, template = self.conns, self.topics, self._template
        width = len(conns)
        t0 = time.time()
        sent = 0
        self.current = 0
        second, prefix = -1, b""
        while sent < total:
            if stop is not None and stop.is_set():
                break
            now = time.time()
            due = min(total, int((now - t0) * total_rate) + 1)
            whole = int(now)
            if whole != second:  # the date part of TimeInstant changes once a second
                second, prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)).encode()
            millis = b".%03dZ" % (int(now * 1000) % 1000)
            stamp = prefix + millis
            while sent < due:
                meter = sent % meters
                body = template % (stamp, b"%.4f" % (49.9 + (sent % 2000) / 10000))
                conns[meter % width].add(topics[meter], body)
                sent += 1
            for conn in conns:
                conn.flush()
            self.current = sent
            time.sleep(0.002)
        last = time.time()
        deadline = time.monotonic() + 30
        while self.unacked and time.monotonic() < deadline:
            time.sleep(0.01)
        self.published += sent
        return sent, t0, last
