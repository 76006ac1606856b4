"""Moved to `kernel.yaml_lines` (the bottom layer); this name stays only while in-flight changes switch over."""

from kernel.yaml_lines import *
from kernel.yaml_lines import YamlSyntaxError, dotted, line_of, load_with_lines  # noqa: F401
