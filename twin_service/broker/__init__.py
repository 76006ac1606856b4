"""The embedded NGSI-LD context broker: Orion-LD's API on port 1026, state in one SQLite file.

Start it with `create_app(data_dir)` (an ASGI app) or `python -m twin_service.broker --data-dir ./var`.
"""

from ._app import ROUTES, create_app
from ._errors import NgsiLdError
from ._store import DATABASE_NAME, AttributeInstance, Store

__all__ = ["DATABASE_NAME", "ROUTES", "AttributeInstance", "NgsiLdError", "Store", "create_app"]
