"""Inventory validation: every cause is reported with the file's line and the field's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.inventory import InventoryError, load_inventory, parse_inventory

EXAMPLE = Path(__file__).resolve().parents[2] / "provisioning" / "examples" / "site.yaml"

GOOD = """\
tenants:
  - service: energytwin
    groups:
      - apikey: meterkey
    sites:
      - id: s1
        meters:
          - device_id: m1
            nominal_voltage_v: 230
            nominal_frequency_hz: 50
            ct_primary_a: 100
"""


def test_the_example_inventory_is_valid() -> None:
    inventory = load_inventory(EXAMPLE)
    tenant = inventory.tenants[0]
    assert [m.device_id for _, m in tenant.meters()] == ["meter-001", "meter-002", "meter-101"]
    assert tenant.subscribers[0].name == "quantumleap"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("nominal_frequency_hz: 50", "nominal_frequency_hz: 55", ("x.yaml:10: tenants[0].sites[0].meters[0]"
                                                                  ".nominal_frequency_hz: Input should be 50 or 60")),
        ("ct_primary_a: 100", "ct_primary_a: 0", ("x.yaml:11: tenants[0].sites[0].meters[0].ct_primary_a: "
                                                 "Input should be greater than 0")),
        ("device_id: m1", "device_id: m/1", "x.yaml:8: tenants[0].sites[0].meters[0].device_id: use letters"),
        ("apikey: meterkey", "apikey: meter key", "x.yaml:4: tenants[0].groups[0].apikey: use letters"),
        ("            ct_primary_a: 100\n", "", ("x.yaml:8: tenants[0].sites[0].meters[0].ct_primary_a: "
                                              "Field required")),
        ("ct_primary_a: 100", "ct_primary_a: 100\n            colour: red",
         "x.yaml:12: tenants[0].sites[0].meters[0].colour: Extra inputs are not permitted"),
        ("device_id: m1", "device_id: m1\n            group: other",
         "x.yaml:9: tenants[0].sites[0].meters[0].group: no group with apikey 'other'"),
        ("service: energytwin", "service: Energy Twin", "x.yaml:2: tenants[0].service: String should match"),
        ("    groups:", "    groups: oops\n    x:", "x.yaml:3: tenants[0].groups: Input should be a valid list"),
        ("      - apikey: meterkey", "      - apikey: [meterkey", "x.yaml:5: not valid YAML"),
    ],
)
def test_each_problem_names_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(InventoryError) as error:
        parse_inventory(GOOD.replace(old, new, 1), "x.yaml")
    assert any(problem.startswith(expected) for problem in error.value.problems), error.value.problems


def test_duplicates_across_the_file_are_reported() -> None:
    twice = GOOD + "          - device_id: m1\n            nominal_voltage_v: 230\n" \
                   "            nominal_frequency_hz: 50\n            ct_primary_a: 5\n"
    with pytest.raises(InventoryError) as error:
        parse_inventory(twice, "x.yaml")
    assert error.value.problems == [("x.yaml:12: tenants[0].sites[0].meters[1].device_id: "
                                    "device_id 'm1' appears twice in this tenant")]
    shared_key = GOOD + "  - service: other\n    groups:\n      - apikey: meterkey\n"
    with pytest.raises(InventoryError) as error:
        parse_inventory(shared_key, "x.yaml")
    assert error.value.problems[0].startswith("x.yaml:14: tenants[1].groups[0].apikey: apikey 'meterkey'")


def test_several_problems_are_all_reported_and_an_empty_file_too() -> None:
    bad = GOOD.replace("nominal_frequency_hz: 50", "nominal_frequency_hz: 55").replace("ct_primary_a: 100",
                                                                                        "ct_primary_a: -2")
    with pytest.raises(InventoryError) as error:
        parse_inventory(bad, "x.yaml")
    assert len(error.value.problems) == 2
    with pytest.raises(InventoryError) as error:
        parse_inventory("", "empty.yaml")
    assert error.value.problems == ["empty.yaml:1: expected a mapping with a 'tenants' list"]
