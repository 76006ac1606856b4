# Meter configuration. The flashing tool writes a per-meter copy of this file; these are the defaults.
# Calibration defaults are ADI's example board (docs/ade9000.md §3: ADE9000 TRM UG-1098 Table 8 and ADI's
# calibration sketch): CT 2500:1 with a 10.2 ohm burden (0.00408 V/A) and a divider giving 0.00125 V per line
# volt, PGA x1 -> 10.73364 uV, 3.28849 uA, 4.73755 mW per code.
# docs/firmware.md explains every setting; `energytwin meter calibrate` prints the gain lines below.

DEVICE_ID = "meter-001"
APIKEY = "energytwin-demo"

# Network
WIFI_SSID = "energytwin"
WIFI_PASSWORD = ""
MQTT_HOST = "192.168.1.10"
MQTT_PORT = 1883  # 8883 with MQTT_TLS
MQTT_USER = None
MQTT_PASSWORD = None
MQTT_TLS = False
MQTT_TLS_PARAMS = {}  # passed to umqtt as ssl_params, e.g. {"server_hostname": "broker.example.org"}
MQTT_KEEPALIVE_S = 60
NTP_HOST = "pool.ntp.org"

# Measurement
PERIOD_S = 1  # sampling and publishing period while online
NOMINAL_HZ = 50  # ACCMODE.SELFREQ: 50 or 60
NOMINAL_V = 230  # phase-to-neutral nominal voltage (EN 50160 Un)
WIRING = "3P4W"  # "3P4W": 4-wire wye; "3P3W": 3-wire delta (VCONSEL 001, IB = -IA - IC)
RATED_CURRENT_A = 63  # largest current per phase the installation can carry: bounds the offline period
DIP_PCT = 90  # dip below 90 % of nominal (EN 50160), swell above 110 %, for PQ_CYCLES line cycles
SWELL_PCT = 110
PQ_CYCLES = 2
OVERCURRENT_A = 80  # overcurrent monitor on RMS1/2 current; 0 disables it

# Energy across power cuts (docs/firmware.md): counters saved to flash at most every FLASH_SAVE_S and at power-on.
# "auto": the `energy` data partition if the partition table has one, else the file ENERGY_FILE; None: off.
ENERGY_STORE = "auto"
ENERGY_FILE = "/energy.bin"
FLASH_SAVE_S = 900

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
PHCAL = (0, 0, 0)  # xPHCAL0 register codes
IRMSOS = (0, 0, 0)  # RMS and power offsets, register codes
VRMSOS = (0, 0, 0)
WATTOS = (0, 0, 0)
NIGAIN = 0
NIRMSOS = 0

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
