# `umqtt.simple` for the firmware under MicroPython/wasm, with micropython-lib's API. The host side publishes
# through a real paho-mqtt client to a real broker; QoS 1 publishes return once the broker acknowledged them,
# like umqtt.simple waiting for PUBACK. Failures surface as OSError / MQTTException, as on the device.

_host_mqtt = None  # (op, args_dict) -> {"ok": bool, "errno": int, ...}


def bind(mqtt):
    """Connect the shim to the host function (called once by the harness)."""
    global _host_mqtt
    _host_mqtt = mqtt


class MQTTException(Exception):
    pass


def _text(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode()
    return value


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                 ssl_params=None):
        if ssl_params is None:
            ssl_params = {}
        if port == 0:
            port = 8883 if ssl else 1883
        self.client_id = _text(client_id)
        self.server = _text(server)
        self.port = port
        self.user = _text(user)
        self.pswd = _text(password)
        self.keepalive = keepalive
        self.ssl = ssl
        self.cb = None
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False
        self._connected = False

    def _call(self, op, args):
        result = _host_mqtt(op, args)
        if not result.get("ok"):
            if "rc" in result:
                raise MQTTException(result["rc"])
            raise OSError(result.get("errno", 104))  # ECONNRESET
        return result

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw_topic = _text(topic)
        self.lw_msg = _text(msg)
        self.lw_qos = qos
        self.lw_retain = retain

    def connect(self, clean_session=True, timeout=None):
        result = self._call("connect", {
            "client_id": self.client_id, "host": self.server, "port": self.port, "user": self.user,
            "password": self.pswd, "keepalive": self.keepalive, "clean_session": clean_session,
            "tls": bool(self.ssl),
            "will": None if self.lw_topic is None else [self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain],
        })
        self._connected = True
        return result.get("session_present", False)

    def disconnect(self):
        self._connected = False
        self._call("disconnect", {"client_id": self.client_id})

    def ping(self):
        self._call("ping", {"client_id": self.client_id})

    def publish(self, topic, msg, retain=False, qos=0):
        if qos == 2:
            raise ValueError("QoS 2 not supported by umqtt.simple")
        self._call("publish", {"client_id": self.client_id, "topic": _text(topic), "msg": _text(msg),
                               "retain": bool(retain), "qos": qos})

    def subscribe(self, topic, qos=0):
        self._call("subscribe", {"client_id": self.client_id, "topic": _text(topic), "qos": qos})

    def wait_msg(self):
        return self.check_msg()

    def check_msg(self, attempts=2):
        result = self._call("check_msg", {"client_id": self.client_id})
        message = result.get("message")
        if message is not None and self.cb is not None:
            self.cb(message[0].encode(), message[1].encode())
