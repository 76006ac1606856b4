"""Start the embedded stack's MQTT broker: Mosquitto when installed, else the pure-Python amqtt broker.

Both listen on plain TCP with anonymous access on the loopback interface by default, like the production
Mosquitto in docker-compose.fiware.yml minus its password file. The process is a child we own: `stop()` ends it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, which some PATHs lack)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).exists():
            return candidate
    return None


def wait_for_port(host: str, port: int, timeout_s: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError/RuntimeError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:.0f} s")


@dataclass
class MqttServer:
    """A running MQTT broker process."""

    kind: str  # "mosquitto" or "amqtt"
    host: str
    port: int
    process: subprocess.Popen
    workdir: Path
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.kind}.log"

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Return once the broker accepts connections; RuntimeError with its log's tail otherwise."""
        try:
            wait_for_port(self.host, self.port, timeout_s=timeout_s, proc=self.process)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise RuntimeError(
                f"{self.kind} did not start on {self.host}:{self.port}; see {self.log_path}:\n"
                + self.log_path.read_text(errors="replace")[-2000:]
            ) from None
        log.info("MQTT broker %s listening on %s:%d", self.kind, self.host, self.port)

    def reload_credentials(self) -> None:
        """Make the broker read its password_file and acl_file again (new devices provisioned).

        Mosquitto re-reads them on SIGHUP (mosquitto(8)); it may run under the stack's guard process, so the
        signal goes to the mosquitto process itself. The amqtt plugins re-read the files when they change.
        """
        if self.kind != "mosquitto" or self.process.poll() is not None:
            return
        import psutil

        try:
            procs = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if Path(proc.exe()).name == "mosquitto" or proc.name() == "mosquitto":
                    proc.send_signal(signal.SIGHUP)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_AMQTT_RUNNER = textwrap.dedent(
    """
    import asyncio, sys
    from amqtt.broker import Broker

    async def main(host, port, password_file=None, acl_file=None):
        plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        if password_file:  # per-device credentials: the same files Mosquitto reads (access/_amqtt_plugins.py)
            plugins = {"access._amqtt_plugins.MosquittoPasswordFilePlugin": {"password_file": password_file},
                       "access._amqtt_plugins.MosquittoAclFilePlugin": {"acl_file": acl_file}}
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
            "plugins": plugins,
        }
        broker = Broker(config)
        await broker.start()
        await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:5]))
    """
)


def _let_mosquitto_write(workdir: Path) -> bool:
    """Started as root, Mosquitto drops to the `mosquitto` user: give it the directory its database is saved in.

    False when that user still cannot reach the directory because a parent is closed to it (a 0700 temporary
    directory, /root): then every save fails with "Permission denied", and a restart of Mosquitto starts with no
    sessions, losing what was queued for the agent (the soak lost one reading per meter that way). The caller
    then keeps Mosquitto root (`user root`, mosquitto.conf(5)) rather than run without persistence.
    """
    if os.geteuid() != 0:
        return True
    try:
        import pwd

        account = pwd.getpwnam("mosquitto")
    except (ImportError, KeyError):
        return True
    os.chown(workdir, account.pw_uid, account.pw_gid)
    for name in ("mosquitto.db", "mosquitto.db.new"):
        with contextlib.suppress(FileNotFoundError):
            os.chown(workdir / name, account.pw_uid, account.pw_gid)
    return _can_enter(workdir.resolve().parents, account.pw_uid, account.pw_gid)


def _can_enter(directories: Sequence[Path], uid: int, gid: int) -> bool:
    """Whether a user (uid, primary gid) may traverse every directory (search permission, x)."""
    for directory in directories:
        mode = directory.stat()
        bit = (stat.S_IXUSR if mode.st_uid == uid else stat.S_IXGRP if mode.st_gid == gid else stat.S_IXOTH)
        if not mode.st_mode & bit:
            return False
    return True


def spawn_mqtt_server(
    workdir: Path, host: str = "127.0.0.1", port: int = 1883, prefer: str = "auto",
    launcher: Sequence[str] = (), auth: tuple[Path, Path] | None = None,
) -> MqttServer:
    """Start Mosquitto (or amqtt when Mosquitto is missing or `prefer="amqtt"`) without waiting for it.

    `auth`: (password_file, acl_file) in Mosquitto's formats (access/_mqtt_auth.py writes them): anonymous
    clients are refused, each login publishes and reads only what the ACL lists. None: anonymous access.

    The process is in its own session (a terminal's Ctrl-C reaches only its owner, which stops it in order);
    call `wait_ready()` next. Split from `start_mqtt_server` so a supervisor can record the child before
    anything that may be interrupted.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    mosquitto = find_mosquitto() if prefer in ("auto", "mosquitto") else None
    if prefer == "mosquitto" and mosquitto is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    if mosquitto:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            # Persistence: sessions and their queued QoS 1 messages survive a restart of the broker (saved at
            # shutdown and every 10 s), so the agent's persistent session misses nothing published meanwhile.
            f"listener {port} {host}\n"
            + ("allow_anonymous true\n" if auth is None else
               f"allow_anonymous false\npassword_file {auth[0]}\nacl_file {auth[1]}\n")
            + "persistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 10\n"
            "max_queued_messages 100000\nmax_inflight_messages 1000\n",
            encoding="utf-8",
        )
        if not _let_mosquitto_write(workdir):
            log.warning("the mosquitto user cannot enter a parent of %s: Mosquitto stays root so that its "
                        "persistence works", workdir)
            with conf.open("a", encoding="utf-8") as extra:
                extra.write("user root\n")
        kind, argv = "mosquitto", [mosquitto, "-c", str(conf)]
    else:
        kind, argv = "amqtt", [sys.executable, "-c", _AMQTT_RUNNER, host, str(port),
                               *([str(auth[0]), str(auth[1])] if auth else [])]
    with (workdir / f"{kind}.log").open("ab") as log_file:
        # launcher: a command that runs argv in its place (the stack's guard that ties a child's life to it)
        proc = subprocess.Popen([*launcher, *argv], stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return MqttServer(kind, host, port, proc, workdir)


def start_mqtt_server(
    workdir: Path, host: str = "127.0.0.1", port: int = 1883, prefer: str = "auto",
    auth: tuple[Path, Path] | None = None,
) -> MqttServer:
    """Start Mosquitto (or amqtt when Mosquitto is missing or `prefer="amqtt"`) and wait until it listens."""
    server = spawn_mqtt_server(workdir, host, port, prefer, auth=auth)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that is free right now (tests run beside a live stack)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
