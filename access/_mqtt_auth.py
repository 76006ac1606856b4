"""Per-device MQTT credentials: a secret per meter, Mosquitto's password_file and acl_file, one account per service.

Why: without them any host that reaches port 1883 can publish as any meter (and the twin believes it) or read
every meter's commands. With them each device logs in with its own username (its device id) and secret, may
publish only its own IoT Agent JSON topics and may read only its own command topic:

    publish  /json/<apikey>/<device_id>/attrs[/+]   /json/<apikey>/<device_id>/cmdexe   (and the legacy forms
             /<apikey>/<device_id>/...; iotagent-json's topics, docs/compatibility.md)
    read     /json/<apikey>/<device_id>/cmd          /<apikey>/<device_id>/cmd

Files, in `<data_dir>/access/mqtt/` (all mode 0600):
  devices.json   username -> secret, apikey, device id, kind (device | service); the secrets a device is flashed
                 with (docs/access.md) — only the hashes below go to the broker
  password_file  Mosquitto 2's format: `user:$7$<iterations>$<b64 salt>$<b64 PBKDF2-HMAC-SHA512>` (what
                 `mosquitto_passwd` writes: 12-byte salt, 101 iterations, 64-byte key; Mosquitto 2.0 man page
                 mosquitto_passwd(1)); secrets are 32 random bytes, so the low iteration count is not what
                 protects them
  acl_file       Mosquitto's acl_file format (`user <name>` then `topic read|write|readwrite <filter>`,
                 mosquitto.conf(5)); nothing is allowed that is not listed

The amqtt fallback reads the same two files through the plugins in `access._amqtt_plugins`.
Secrets already generated are kept: running the generation again (a new meter in the inventory) only adds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ITERATIONS = 101  # mosquitto_passwd's default (Mosquitto 2.0 src/password_mosq.h PW_DEFAULT_ITERATIONS)
SALT_BYTES = 12
AGENT_USER = "energytwin-agent"  # the IoT Agent: reads every device's measures, writes their commands
SERVICE_TOPICS = ("#",)


class MqttAuthError(ValueError):
    """A credentials or ACL file cannot be read; the message names the file and line."""


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The `$7$` PBKDF2-SHA512 hash Mosquitto 2 reads from its password_file."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_mosquitto_hash(password: str, stored: str) -> bool:
    """True when `password` matches a `$7$` (PBKDF2-SHA512) hash; any other hash kind is refused."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations, salt, key = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    if not 1 <= iterations <= 10_000_000:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(key)), key)


def device_topics(apikey: str, device_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(publish, read) topic filters of one device: its own IoT Agent JSON topics and nothing else."""
    publish: list[str] = []
    read: list[str] = []
    for root in (f"/json/{apikey}/{device_id}", f"/{apikey}/{device_id}"):
        publish += [f"{root}/attrs", f"{root}/attrs/+", f"{root}/cmdexe"]
        read.append(f"{root}/cmd")
    return tuple(publish), tuple(read)


@dataclass(frozen=True)
class Account:
    username: str
    secret: str
    kind: str  # "device", "gateway" (one login publishing for several devices, e.g. a SunSpec bridge), "service"
    apikey: str | None = None
    device_id: str | None = None
    devices: tuple[tuple[str, str], ...] = ()  # a gateway's (apikey, device_id) pairs

    def topics(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(publish, read) filters; a service reads and writes everything, a gateway its devices' topics."""
        if self.kind == "service":
            return SERVICE_TOPICS, SERVICE_TOPICS
        pairs = self.devices if self.kind == "gateway" else ((self.apikey or "", self.device_id or ""),)
        publish: list[str] = []
        read: list[str] = []
        for apikey, device_id in pairs:
            p, r = device_topics(apikey, device_id)
            publish += p
            read += r
        return tuple(publish), tuple(read)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


@dataclass
class MqttCredentials:
    """The credentials store of one stack (`<data_dir>/access/mqtt/`)."""

    data_dir: Path

    @property
    def directory(self) -> Path:
        return Path(self.data_dir) / "access" / "mqtt"

    @property
    def accounts_path(self) -> Path:
        return self.directory / "devices.json"

    @property
    def password_file(self) -> Path:
        return self.directory / "password_file"

    @property
    def acl_file(self) -> Path:
        return self.directory / "acl_file"

    def load(self) -> dict[str, Account]:
        try:
            body = json.loads(self.accounts_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise MqttAuthError(f"{self.accounts_path}: not valid JSON: {exc}") from exc
        return {name: Account(name, a["secret"], a["kind"], a.get("apikey"), a.get("device_id"),
                              tuple((k, d) for k, d in a.get("devices") or ()))
                for name, a in body.items()}

    def ensure(self, devices: Iterable[tuple[str, str]] = (), services: Iterable[str] = (AGENT_USER,),
               gateways: dict[str, Iterable[tuple[str, str]]] | None = None) -> dict[str, Account]:
        """Give every (apikey, device_id) and service an account (existing secrets kept), rewrite the files.

        A device's username is its device id, so a device id may be under one apikey only: the same id under a
        second apikey is refused (it would let one login publish under both).
        """
        accounts = self.load()
        for name in services:
            if name not in accounts:
                accounts[name] = Account(name, secrets.token_urlsafe(32), "service")
        for apikey, device_id in devices:
            known = accounts.get(device_id)
            if known is None:
                accounts[device_id] = Account(device_id, secrets.token_urlsafe(32), "device", apikey, device_id)
            elif known.kind != "device" or known.apikey != apikey:
                raise MqttAuthError(f"MQTT user {device_id!r} already exists as "
                                    f"{known.kind} {known.apikey or ''}; a device id needs one apikey")
        for name, pairs in (gateways or {}).items():
            known = accounts.get(name)
            if known is not None and known.kind != "gateway":
                raise MqttAuthError(f"MQTT user {name!r} already exists as a {known.kind}")
            merged = tuple(sorted({*(known.devices if known else ()), *((k, d) for k, d in pairs)}))
            accounts[name] = Account(name, known.secret if known else secrets.token_urlsafe(32), "gateway",
                                     devices=merged)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        _write_private(self.accounts_path, json.dumps(
            {a.username: {"secret": a.secret, "kind": a.kind, "apikey": a.apikey, "device_id": a.device_id,
                          **({"devices": [list(d) for d in a.devices]} if a.devices else {})}
             for a in accounts.values()}, indent=2))
        self._write_broker_files(accounts)
        return accounts

    def _write_broker_files(self, accounts: dict[str, Account]) -> None:
        previous = _read_password_file(self.password_file) if self.password_file.exists() else {}
        lines, acl = [], ["# generated by energytwin (access/_mqtt_auth.py): one block per MQTT user", ""]
        for account in sorted(accounts.values(), key=lambda a: a.username):
            stored = previous.get(account.username)
            if stored is None or not verify_mosquitto_hash(account.secret, stored):
                stored = mosquitto_hash(account.secret)  # keep unchanged hashes: the file only changes on news
            lines.append(f"{account.username}:{stored}")
            publish, read = account.topics()
            acl.append(f"user {account.username}")
            both = [t for t in publish if t in read]
            acl += [f"topic readwrite {t}" for t in both]
            acl += [f"topic write {t}" for t in publish if t not in both]
            acl += [f"topic read {t}" for t in read if t not in both]
            acl.append("")
        _write_private(self.password_file, "\n".join(lines) + "\n")
        _write_private(self.acl_file, "\n".join(acl))
        _let_mosquitto_read(self.directory, (self.password_file, self.acl_file))

    def login(self, username: str) -> tuple[str, str] | None:
        """(username, secret) of an account, None when it has none."""
        account = self.load().get(username)
        return None if account is None else (account.username, account.secret)


def _let_mosquitto_read(directory: Path, files: tuple[Path, ...]) -> None:
    """Started as root, Mosquitto drops to the `mosquitto` user and re-reads the files on SIGHUP as that user."""
    if os.geteuid() != 0:
        return
    try:
        import pwd

        account = pwd.getpwnam("mosquitto")
    except (ImportError, KeyError):
        return
    for path in (directory, *files):
        os.chown(path, account.pw_uid, account.pw_gid)


def _read_password_file(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name:
            raise MqttAuthError(f"{path}:{number}: expected user:hash")
        users[name] = stored
    return users


def read_password_file(path: Path) -> dict[str, str]:
    """username -> `$7$` hash, from a Mosquitto password_file."""
    return _read_password_file(Path(path))


def read_acl_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """username -> {"read": [...], "write": [...]} from the `user` / `topic` lines of a Mosquitto acl_file.

    Lines before the first `user` apply to anonymous clients (kept under ""); `pattern` lines (%u, %c) and
    `topic deny` are refused with the line number, since the amqtt fallback would not enforce them.
    """
    acl: dict[str, dict[str, list[str]]] = {}
    user = ""
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split(maxsplit=2)
        if words[0] == "user" and len(words) >= 2:
            user = line.split(maxsplit=1)[1]
            acl.setdefault(user, {"read": [], "write": []})
        elif words[0] == "topic":
            access, topic = (words[1], words[2]) if len(words) == 3 else ("readwrite", line.split(maxsplit=1)[1])
            if access not in ("read", "write", "readwrite"):
                raise MqttAuthError(f"{path}:{number}: topic access {access!r} is not read, write or readwrite")
            entry = acl.setdefault(user, {"read": [], "write": []})
            if access in ("read", "readwrite"):
                entry["read"].append(topic)
            if access in ("write", "readwrite"):
                entry["write"].append(topic)
        else:
            raise MqttAuthError(f"{path}:{number}: {words[0]!r} lines are not supported here (user and topic only)")
    return acl


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 §4.7 filter matching: `+` one level, `#` the rest (including the parent level)."""
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(f_levels):
        if level == "#":
            return True
        if index >= len(t_levels):
            return False
        if level != "+" and level != t_levels[index]:
            return False
    return len(f_levels) == len(t_levels)


def filter_within(requested: str, allowed: str) -> bool:
    """A subscription filter is allowed when every topic it can match is matched by `allowed`."""
    r_levels, a_levels = requested.split("/"), allowed.split("/")
    for index, level in enumerate(a_levels):
        if level == "#":
            return True
        if index >= len(r_levels):
            return False
        if r_levels[index] == "#":
            return False
        if level != "+" and (r_levels[index] == "+" or level != r_levels[index]):
            return False
    return len(r_levels) == len(a_levels)
