"""The driver as a package of its own: the usage example at its top runs as written under MicroPython against the
ADE9000 model, and manifest.py (freezing) and package.json (mip) name the same, existing files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness

DRIVER_DIR = Path(__file__).resolve().parents[2] / "firmware" / "ade9000_esp32"


def usage_example() -> str:
    """The code lines of the driver's `# Usage` comment block (indented four spaces after the `#`)."""
    head = (DRIVER_DIR / "ade9000.py").read_text(encoding="utf-8").split("# Sources", 1)[0]
    lines = [line[6:] for line in head.splitlines() if line.startswith("#     ")]
    assert lines, "no usage example at the top of ade9000.py"
    return "\n".join(lines) + "\n"


def test_the_usage_example_reads_what_the_model_measures() -> None:
    harness = MeterHarness(MeterConfig(device_id="usage", period_s=1.0))
    for k in range(3):
        harness.model.set_phase(k, PhaseInput(231.0 + k, 5.0 + k, 0.0, 0.02, 0.05))
    harness.boot(start=False)  # the shims and the model only; the example builds its own driver
    try:
        out = harness.run(usage_example()).stdout
    finally:
        harness.close()
    found = [(float(v), float(i)) for v, i in re.findall(r"L\d: ([\d.]+) V ([\d.]+) A", out)]
    assert found == [pytest.approx((231.0 + k, 5.0 + k), abs=0.2) for k in range(3)], out


def _manifest_modules() -> list[str]:
    modules: list[str] = []
    recorded: dict[str, object] = {}

    def metadata(**fields: object) -> None:
        recorded.update(fields)

    def module(name: str, opt: int = 0) -> None:
        modules.append(name)

    # A MicroPython manifest is Python run with these functions in scope (tools/manifestfile.py does the same).
    code = (DRIVER_DIR / "manifest.py").read_text(encoding="utf-8")
    exec(code, {"metadata": metadata, "module": module})  # noqa: S102
    assert recorded["version"] and recorded["description"]
    return modules


def test_manifest_and_package_json_list_the_same_existing_files() -> None:
    modules = _manifest_modules()
    package = json.loads((DRIVER_DIR / "package.json").read_text(encoding="utf-8"))
    assert [name for name, _ in package["urls"]] == modules == ["ade9000.py"]
    for name, url in package["urls"]:
        assert (DRIVER_DIR / name).is_file()
        assert url == name  # relative to package.json, so a fork or a local clone installs itself
