"""The embedded NGSI-LD broker as its own process on a free port, as `energytwin up` runs it, for tests that talk
to it over HTTP (one module-scoped broker per test module)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twin_service.mqtt_server import free_port, wait_for_port


@contextmanager
def broker_process(data_dir: Path) -> Iterator[str]:
    """Start `python -m twin_service.broker` on `data_dir`; yields its base URL, terminates it afterwards."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                             str(data_dir), "--log-level", "warning"])
    try:
        wait_for_port("127.0.0.1", port, timeout_s=20, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
