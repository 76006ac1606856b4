"""Moved to `kernel.ports` (the bottom layer); this name stays only while in-flight changes switch over."""

from kernel.ports import *
from kernel.ports import ALL, PRODUCTION  # noqa: F401
