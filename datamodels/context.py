"""The JSON-LD @context each entity type is written and queried with, and the vendored copies for offline use.

Smart Data Models map shared terms (`refDevice`, `category`, `serialNumber`) to different IRIs per subject
(each subject's context.jsonld in the smart-data-models repositories), so every part creates and queries a type with the same context: this module.
The files under `datamodels/contexts/` are verbatim copies (see NOTICE.md) so nothing fetches them at run time.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
ENERGY_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Energy/master/context.jsonld"
DEVICE_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld"
ALERT_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld"
GREEN_ENERGY_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.GreenEnergy/master/context.jsonld"
BATTERY_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Battery/master/context.jsonld"

# Context URL -> vendored file name under datamodels/contexts/.
VENDORED: dict[str, str] = {
    CORE_CONTEXT: "ngsi-ld-core-context-v1.8.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld": "ngsi-ld-core-context-v1.8.jsonld",
    ENERGY_CONTEXT: "dataModel.Energy.context.jsonld",
    DEVICE_CONTEXT: "dataModel.Device.context.jsonld",
    ALERT_CONTEXT: "dataModel.Alert.context.jsonld",
    GREEN_ENERGY_CONTEXT: "dataModel.GreenEnergy.context.jsonld",
    BATTERY_CONTEXT: "dataModel.Battery.context.jsonld",
}

CONTEXTS_DIR = Path(__file__).parent / "contexts"

# The @context each entity type is created and queried with (user context first, core last, as SDM examples do).
CONTEXT_BY_TYPE: dict[str, list[str]] = {
    "ThreePhaseAcMeasurement": [ENERGY_CONTEXT, CORE_CONTEXT],
    "Device": [DEVICE_CONTEXT, CORE_CONTEXT],
    "Anomaly": [ALERT_CONTEXT, CORE_CONTEXT],
    "Alert": [ALERT_CONTEXT, CORE_CONTEXT],
    "PhotovoltaicMeasurement": [GREEN_ENERGY_CONTEXT, CORE_CONTEXT],  # inverters (bridges/sunspec)
    "BatteryStatus": [BATTERY_CONTEXT, CORE_CONTEXT],
}


def context_for(entity_type: str) -> list[str]:
    """The @context list for an entity type; KeyError names the types this project writes."""
    try:
        return list(CONTEXT_BY_TYPE[entity_type])
    except KeyError:
        raise KeyError(f"no @context defined for type {entity_type!r}; known: {sorted(CONTEXT_BY_TYPE)}") from None


def link_header(context_url: str) -> str:
    """The NGSI-LD `Link` header naming a user @context for `application/json` requests."""
    return f'<{context_url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


@cache
def load_vendored(url: str) -> dict:
    """The parsed JSON of a vendored context document, or KeyError when the URL is not vendored."""
    name = VENDORED[url]
    return json.loads((CONTEXTS_DIR / name).read_text(encoding="utf-8"))
