# `network` for the firmware under MicroPython/wasm: one station interface whose link state the host controls,
# so tests can take the meter's WiFi down and up. Calls mirror the ESP32 port's network.WLAN.
STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010

_host_wifi = None  # (op, arg) -> value; ops: "connect", "isconnected", "ifconfig", "mac", "disconnect"


def bind(wifi):
    """Connect the shim to the host function (called once by the harness)."""
    global _host_wifi
    _host_wifi = wifi


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self._iface = interface_id
        self._active = False

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        return None

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("WLAN not active")
        _host_wifi("connect", ssid)

    def disconnect(self):
        _host_wifi("disconnect", None)

    def isconnected(self):
        return self._active and bool(_host_wifi("isconnected", None))

    def status(self, param=None):
        if param == "rssi":
            return -55
        return STAT_GOT_IP if self.isconnected() else STAT_CONNECTING

    def ifconfig(self, config=None):
        return tuple(_host_wifi("ifconfig", None))

    def config(self, *args, **kwargs):
        if args and args[0] == "mac":
            return bytes.fromhex(_host_wifi("mac", None))
        if args and args[0] in ("hostname", "dhcp_hostname"):
            return _host_wifi("hostname", None)
        return None
