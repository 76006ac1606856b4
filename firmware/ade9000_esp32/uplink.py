# MQTT uplink to the FIWARE IoT Agent JSON (docs/architecture.md, "The meter contract"): QoS 1 on /json/<apikey>/<device_id>/attrs, optional
# username/password and TLS, keep-alive pings, reconnect with exponential backoff and jitter.
import random
import time

from umqtt.simple import MQTTClient, MQTTException

_BACKOFF_MIN_MS = 1000
_BACKOFF_MAX_MS = 300000  # 5 min: a broker restart is not hammered by every meter of a site at once


def _tls(cfg):
    """The `ssl` argument for umqtt.simple: an SSLContext on MicroPython >= 1.23, True on older ports."""
    if not cfg.MQTT_TLS:
        return False
    try:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except (ImportError, AttributeError):
        return True  # umqtt.simple < 1.4 wraps the socket itself with ssl_params
    ca = cfg.MQTT_TLS_PARAMS.get("cadata")
    if ca:
        ctx.load_verify_locations(cadata=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE  # encrypted, server not authenticated: say so in docs/firmware.md
    return ctx


class Uplink:
    """Publishes JSON payloads; `send` returns False (never raises) when the message must be kept for later."""

    def __init__(self, cfg):
        self.topic = "/json/%s/%s/attrs" % (cfg.APIKEY, cfg.DEVICE_ID)
        self.keepalive_s = cfg.MQTT_KEEPALIVE_S
        kwargs = {"port": cfg.MQTT_PORT, "user": cfg.MQTT_USER, "password": cfg.MQTT_PASSWORD,
                  "keepalive": cfg.MQTT_KEEPALIVE_S, "ssl": _tls(cfg)}
        if kwargs["ssl"] is True:
            kwargs["ssl_params"] = cfg.MQTT_TLS_PARAMS
        self._client = MQTTClient(cfg.DEVICE_ID, cfg.MQTT_HOST, **kwargs)
        self.connected = False
        self.sent = 0
        self.failures = 0
        self.bytes_sent = 0
        self.largest = 0  # largest payload published, bytes
        self._backoff_ms = 0
        self._retry_at_ms = time.ticks_ms()
        self._last_io_ms = time.ticks_ms()

    def _fail(self, what, exc):
        self.connected = False
        self.failures += 1
        self._backoff_ms = min(_BACKOFF_MAX_MS, max(_BACKOFF_MIN_MS, self._backoff_ms * 2))
        wait = self._backoff_ms + random.getrandbits(16) % (self._backoff_ms // 2 + 1)  # + 0..50 % jitter
        self._retry_at_ms = time.ticks_add(time.ticks_ms(), wait)
        print("uplink: %s %s failed (%s); retrying in %d ms" % (what, self.topic, exc, wait))
        try:
            self._client.disconnect()
        except (OSError, MQTTException):
            pass

    def may_try(self):
        """True when connected, or when the backoff allows the next connection attempt."""
        return self.connected or time.ticks_diff(time.ticks_ms(), self._retry_at_ms) >= 0

    def _connect(self):
        self._client.connect()
        self.connected = True
        self._backoff_ms = 0
        self._last_io_ms = time.ticks_ms()

    def send(self, message):
        """Publish one payload (str) with QoS 1; True once the broker acknowledged it."""
        if not self.may_try():
            return False
        try:
            if not self.connected:
                self._connect()
            self._client.publish(self.topic, message, False, 1)
        except (OSError, MQTTException) as exc:
            self._fail("publish to", exc)
            return False
        n = len(message)
        self.sent += 1
        self.bytes_sent += n
        if n > self.largest:
            self.largest = n
        self._last_io_ms = time.ticks_ms()
        return True

    def keep_alive(self):
        """Ping when nothing was sent for half the keep-alive interval, so the broker keeps the session."""
        if not self.connected or time.ticks_diff(time.ticks_ms(), self._last_io_ms) < self.keepalive_s * 500:
            return
        try:
            self._client.ping()
            self._last_io_ms = time.ticks_ms()
        except (OSError, MQTTException) as exc:
            self._fail("ping on", exc)

    def close(self):
        if self.connected:
            try:
                self._client.disconnect()
            except (OSError, MQTTException):
                pass
            self.connected = False
