"""energytwin: three-phase energy meters as a live FIWARE NGSI-LD digital twin."""

__version__ = "0.1.0"
