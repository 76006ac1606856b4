"""Line numbers for hand-edited YAML files (inventory, community file)."""

import pytest

from kernel.yaml_lines import YamlSyntaxError, dotted, line_of, load_with_lines

TEXT = """\
tenants:
  - service: energytwin
    groups:
      - apikey: k1
      - apikey: k2
        autoprovision: maybe
"""


def test_every_key_and_item_has_its_line():
    data, lines = load_with_lines(TEXT, "site.yaml")
    assert data["tenants"][0]["groups"][1]["apikey"] == "k2"
    assert lines[("tenants", 0, "groups", 1, "autoprovision")] == 6
    assert lines[("tenants", 0, "groups", 0)] == 4
    # a field the file lacks is reported on its parent's line
    assert line_of(lines, ("tenants", 0, "groups", 1, "resource")) == 5
    assert dotted(("tenants", 0, "groups", 1, "autoprovision")) == "tenants[0].groups[1].autoprovision"
    assert dotted(()) == "(file)"


def test_a_syntax_error_names_file_and_line():
    with pytest.raises(YamlSyntaxError, match=r"^site\.yaml:2: not valid YAML: mapping values are not allowed"):
        load_with_lines("a: 1\nb: c: d\n", "site.yaml")
