"""Write iot_agent_config/service-group.json from provisioning/agent_bodies.py (the measure table).

`python -m provisioning.agent_config_file` rewrites it (the body to POST to the production IoT Agent's
`/iot/services`) after a change of the measure table; tests/provisioning/test_iot_agent_config.py checks the committed
file, `iotagent.env` and `config.js` against the measure table and the provisioning bodies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from provisioning.agent_bodies import service_group

HERE = Path(__file__).resolve().parents[1] / "iot_agent_config"
APIKEY = "meterkey"


def render() -> str:
    """The `POST /iot/services` body for the meters' service group, as committed."""
    return json.dumps({"services": [service_group(APIKEY)]}, indent=2) + "\n"


def main() -> None:
    (HERE / "service-group.json").write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {HERE / 'service-group.json'}\n")


if __name__ == "__main__":
    main()
