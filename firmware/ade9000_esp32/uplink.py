# MQTT uplink to the FIWARE IoT Agent JSON (DESIGN.md §3.1): one JSON object per period, QoS 1.
from umqtt.simple import MQTTClient, MQTTException


class Uplink:
    """Publishes measurement objects on /json/<apikey>/<device_id>/attrs and reconnects after failures."""

    def __init__(self, device_id, apikey, host, port=1883, keepalive_s=60):
        self.topic = "/json/%s/%s/attrs" % (apikey, device_id)
        self._client = MQTTClient(device_id, host, port=port, keepalive=keepalive_s)
        self.connected = False
        self.sent = 0
        self.failures = 0

    def _connect(self):
        self._client.connect()
        self.connected = True

    def send(self, message):
        """Publish one payload (str/bytes); True when the broker acknowledged it, False to retry later."""
        try:
            if not self.connected:
                self._connect()
            self._client.publish(self.topic, message, False, 1)
        except (OSError, MQTTException) as exc:
            self.connected = False
            self.failures += 1
            print("uplink: publish to %s failed (%s); will reconnect next period" % (self.topic, exc))
            return False
        self.sent += 1
        return True

    def close(self):
        if self.connected:
            try:
                self._client.disconnect()
            except OSError:
                pass
            self.connected = False
