"""The live twin page: overview of a tenant's meters and one page per meter, updated live from the broker.

The service is an NGSI-LD subscriber like any FIWARE app: it reads the twin through the public API (entities,
temporal API), subscribes to the measurements and the power-quality Anomaly entities, and relays each
notification to the open pages over Server-Sent Events. The page itself is plain HTML, CSS, JavaScript and SVG
served from `static/`, so nothing is fetched from the internet at run time.

Public surface: `create_app(WebConfig)`, `WebConfig`, `PageAuth` (login and role checks), and the `energytwin web` command (`commands.web`).
"""

from kernel.ports import WEB_PORT

from ._app import WebConfig, create_app
from ._auth import PageAuth

__all__ = ["WEB_PORT", "PageAuth", "WebConfig", "create_app"]
