"""Write iot_agent_config/service-group.json from provisioning/agent_bodies.py (the measure table)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from provisioning.agent_bodies import service_group

HERE = Path(__file__).resolve().parent
APIKEY = "meterkey"


def render() -> str:
    """The `POST /iot/services` body for the meters' service group, as committed."""
    return json.dumps({"services": [service_group(APIKEY)]}, indent=2) + "\n"


def main() -> None:
    (HERE / "service-group.json").write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {HERE / 'service-group.json'}\n")


if __name__ == "__main__":
    main()
