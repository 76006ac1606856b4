"""The local issuer's users: name, role, member and devices, secret hashed with Argon2id (pwdlib).

Stored in `<data_dir>/access/users.json` (mode 0600). A member is known by their member id; `--member` may also
name the device id of a meter, which then stands for the member owning that meter (the demo makes one member per
meter, named `member-<device>`).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pwdlib import PasswordHash

from access._policy import ROLES

USERS_FILE = "users.json"
_hasher = PasswordHash.recommended()


class UserError(ValueError):
    """A user operation cannot be done; the message says why."""


@dataclass
class User:
    name: str
    role: str
    secret_hash: str
    member: str | None = None
    devices: list[str] = field(default_factory=list)
    cups: list[str] = field(default_factory=list)


class UserStore:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "access" / USERS_FILE

    def load(self) -> dict[str, User]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserError(f"{self.path}: not valid JSON ({exc})") from exc
        return {name: User(**body) for name, body in raw.items()}

    def _save(self, users: dict[str, User]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({name: asdict(u) for name, u in sorted(users.items())}, out, indent=2)
        tmp.replace(self.path)

    def add(self, name: str, role: str, *, secret: str | None = None, member: str | None = None,
            devices: list[str] | None = None, cups: list[str] | None = None, replace: bool = False) -> str:
        """Add a user; returns the secret (generated when none is given: shown once, only its hash is kept)."""
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if role in ("member", "device") and not (devices or cups):
            raise UserError(f"a {role} needs at least one --device or --cups (what they own)")
        users = self.load()
        if name in users and not replace:
            raise UserError(f"user {name!r} exists (use --replace to change it)")
        secret = secret or secrets.token_urlsafe(18)
        users[name] = User(name, role, _hasher.hash(secret), member or (name if role == "member" else None),
                           list(devices or []), list(cups or []))
        self._save(users)
        return secret

    def check(self, name: str, secret: str) -> User:
        user = self.load().get(name)
        if user is None or not _hasher.verify(secret, user.secret_hash):
            raise UserError("unknown user or wrong secret")
        return user

    def member(self, member_or_device: str) -> User | None:
        """The member user named so, or owning that device."""
        for user in self.load().values():
            if user.role == "member" and (user.member == member_or_device or member_or_device in user.devices):
                return user
        return None
