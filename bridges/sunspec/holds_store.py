"""Held commands saved across a restart of the bridge: a small JSON file in the bridge's data directory.

Without it a restarted bridge forgets its holds, and the device's revert timer silently returns the battery (or
the curtailment) to auto up to an hour later. With `watchdog.state_path` (or next to `buffer.path`) every
accepted command and every release rewrites the file (atomically: a temporary file renamed over it), and on
start each device's holds are written to it again once it is discovered, read back and verified like any command.

    {"version": 1, "devices": {"home-001": {"batteryPowerSetpoint": -2000.0, "pvPowerLimit": 60.0}}}
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from datamodels.der import COMMANDS_BY_NAME

log = logging.getLogger(__name__)

VERSION = 1


def load_holds(path: Path | None) -> dict[str, dict[str, float]]:
    """The saved holds per device id; an absent file is none, a broken one is logged and ignored (never fatal)."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("devices"), dict):
            raise ValueError(f"not a version-{VERSION} holds file")
        holds: dict[str, dict[str, float]] = {}
        for device, commands in data["devices"].items():
            if not isinstance(commands, dict):
                raise ValueError(f"device {device!r}: not an object")
            for name, value in commands.items():
                if name not in COMMANDS_BY_NAME or isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"device {device!r}: {name} = {value!r} is not a held command")
                holds.setdefault(str(device), {})[name] = float(value)
        return holds
    except (OSError, ValueError) as exc:
        log.error("held commands in %s not restored (%s); the devices' revert timers return them to auto", path,
                  exc)
        return {}


def save_holds(path: Path, holds: dict[str, dict[str, float]]) -> None:
    """Write the holds atomically (a crash mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    body = {"version": VERSION, "devices": {device: commands for device, commands in sorted(holds.items())
                                            if commands}}
    temporary.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
