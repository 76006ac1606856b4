"""amqtt plugins that enforce the same Mosquitto password_file and acl_file as Mosquitto does.

amqtt's own FileAuthPlugin reads Argon2/sha512-crypt hashes, not Mosquitto's `$7$` PBKDF2-SHA512, and its ACL
plugin takes the lists in its YAML config. These two read the files `access._mqtt_auth` writes, re-reading them
when they change (Mosquitto re-reads on SIGHUP), so the fallback broker refuses the same logins and drops the
same publishes:

- `MosquittoPasswordFilePlugin`: CONNECT needs a username in the file and its secret; anonymous refused.
- `MosquittoAclFilePlugin`: PUBLISH only to the user's `write` filters (a denied publish is dropped, as
  Mosquitto does), SUBSCRIBE only to filters within its `read` filters, and a message is delivered only when
  its topic matches one of the subscriber's `read` filters.

Not enforced by the fallback (Mosquitto does): `pattern` lines with %u/%c and `topic deny` lines (the generated
files contain neither, and reading such a file refuses with its line number).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from access._mqtt_auth import (
    filter_within,
    read_acl_file,
    read_password_file,
    topic_matches,
    verify_mosquitto_hash,
)

log = logging.getLogger(__name__)


class _Reloading:
    """A file parsed again whenever its mtime or size changes."""

    def __init__(self, path: Path, parse: Any) -> None:
        self.path, self.parse, self.stamp, self.value = Path(path), parse, None, {}

    def get(self) -> Any:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self.stamp:
            self.value, self.stamp = self.parse(self.path), stamp
        return self.value


class MosquittoPasswordFilePlugin(BaseAuthPlugin):
    """Authentication against a Mosquitto 2 password_file (PBKDF2-SHA512 `$7$` hashes)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._users = _Reloading(Path(self._get_config_option("password_file")), read_password_file)
        self._users.get()  # a missing or malformed file stops the broker at start, not at the first login

    async def authenticate(self, *, session: Any) -> bool | None:
        username = getattr(session, "username", None)
        if not username:
            log.warning("MQTT login refused: no username (anonymous clients are not allowed)")
            return False
        stored = self._users.get().get(username)
        if stored is None or not verify_mosquitto_hash(session.password or "", stored):
            log.warning("MQTT login refused for %r: unknown user or wrong secret", username)
            return False
        return True

    @dataclass
    class Config:
        password_file: str = ""


class MosquittoAclFilePlugin(BaseTopicPlugin):
    """Topic access from a Mosquitto acl_file (`user` and `topic read|write|readwrite` lines)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._acl = _Reloading(Path(self._get_config_option("acl_file")), read_acl_file)
        self._acl.get()

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        if not topic:
            return False
        entry = self._acl.get().get(getattr(session, "username", None) or "", {"read": [], "write": []})
        if action == Action.PUBLISH:
            allowed = any(topic_matches(f, topic) for f in entry["write"])
        elif action == Action.SUBSCRIBE:
            allowed = any(filter_within(topic, f) for f in entry["read"])
        else:  # RECEIVE: a message about to be delivered to this subscriber
            allowed = any(topic_matches(f, topic) for f in entry["read"])
        if not allowed and action != Action.RECEIVE:
            log.warning("MQTT %s of %r by %r denied by %s", getattr(action, "value", action), topic,
                        getattr(session, "username", None), self._acl.path)
        return allowed

    @dataclass
    class Config:
        acl_file: str = ""
