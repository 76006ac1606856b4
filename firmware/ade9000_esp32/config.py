# Meter configuration. The flashing tool writes a per-meter copy of this file; these are the defaults.
# Calibration defaults are ADI's example board (shared/reference/ade9000.md §3): CT 2500:1 with a 10.2 ohm burden
# (0.00408 V/A) and a divider giving 0.00125 V per line volt, PGA x1 -> 10.73364 uV, 3.28849 uA, 4.73755 mW per code.

DEVICE_ID = "meter-001"
APIKEY = "energytwin-demo"

# Network
WIFI_SSID = "energytwin"
WIFI_PASSWORD = ""
MQTT_HOST = "192.168.1.10"
MQTT_PORT = 1883
MQTT_KEEPALIVE_S = 60

# Measurement
PERIOD_S = 10  # one sample and one IoT Agent JSON message per period
NOMINAL_HZ = 50  # ACCMODE.SELFREQ: 50 or 60
WIRING = "3P4W"  # 3-phase 4-wire wye (ACCMODE.VCONSEL = 000); the only wiring this firmware configures

# Board calibration
CURRENT_TF_V_PER_A = 0.00408
NEUTRAL_TF_V_PER_A = 0.00408
VOLTAGE_TF_V_PER_V = 0.00125
PGA_CURRENT = 1
PGA_NEUTRAL = 1
PGA_VOLTAGE = 1
IGAIN = (0, 0, 0)  # xIGAIN register codes per phase: factor 1 + code / 2**27
VGAIN = (0, 0, 0)
PGAIN = (0, 0, 0)
NIGAIN = 0

# Wiring of the ESP32 to the ADE9000 (pins of the 3P_nrj_monitor board; ref §6)
SPI_ID = 2
SPI_BAUDRATE = 5000000  # ADI examples use 5 MHz; the ESP32 misreads above ~15 MHz (ref §1)
PIN_SCK = 18
PIN_MOSI = 23
PIN_MISO = 19
PIN_CS = 5
PIN_RESET = 14
PIN_PM1 = 12  # low = PSM0 (normal mode)
TIMER_ID = 0
