# Entry point on the ESP32: start the meter and run its main loop forever.
import machine

import config
from app import Meter

meter = Meter(config)
meter.start()
while True:
    meter.step()
    machine.idle()
