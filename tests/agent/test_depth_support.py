"""A Mosquitto that requires a username and password, for the IOTA_MQTT_USERNAME / PASSWORD test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from twin_service.mqtt_server import free_port, wait_for_port


class MosquittoWithPassword:
    """Mosquitto on a free port with one user; a context manager that stops it."""

    def __init__(self, workdir: Path, user: str, password: str) -> None:
        self.port = free_port()
        self._workdir = workdir
        self._user = user
        self._password = password
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        passwd = self._workdir / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), self._user, self._password], check=True,
                       capture_output=True)
        conf = self._workdir / "mosquitto-auth.conf"
        passwd.chmod(0o600)
        # Run as root, Mosquitto drops to user `mosquitto`, which cannot read pytest's private tmp dir.
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"{user}listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n")
        self._proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, timeout_s=10, proc=self._proc)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
