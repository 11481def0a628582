"""The stack's secrets, generated on the first ``up`` and kept in its state folder (0600).

``passwords.json`` holds the two database roles' passwords and Redis's (key ``redis``);
``flower.json`` Flower's basic-auth login. A state folder from before Redis had a password gets
one added on the next ``up``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

from pagila_stack import StackError
from pagila_stack.access import write_secret

ROLES = {"source": "pagila", "target": "pagila_tgt"}
REDIS_KEY = "redis"
FLOWER_USER = "admin"


class Credentials:
    """Reads and creates the secrets of the state folder ``state_dir``."""

    def __init__(self, state_dir: Path, say: Callable[[str, bool], None]) -> None:
        self.passwords_file = state_dir / "passwords.json"
        self.flower_file = state_dir / "flower.json"
        self._say = say

    def _read_passwords(self) -> dict[str, str] | None:
        if not self.passwords_file.exists():
            return None
        return json.loads(self.passwords_file.read_text())

    def passwords(self, create: bool) -> dict[str, str]:
        """Role passwords and the Redis password; created (or completed) when ``create``."""
        passwords = self._read_passwords()
        if passwords is None and not create:
            raise StackError(
                f"no stack in {self.passwords_file.parent}: run `pagila-stack up` first"
            )
        passwords = dict(passwords or {})
        missing = [key for key in (*ROLES.values(), REDIS_KEY) if key not in passwords]
        if missing and create:
            passwords.update({key: secrets.token_urlsafe(24) for key in missing})
            write_secret(self.passwords_file, passwords)
        return passwords

    def redis_password(self) -> str | None:
        """The Redis password, or None when none was generated yet."""
        return (self._read_passwords() or {}).get(REDIS_KEY)

    def flower(self, create: bool) -> tuple[str, str] | None:
        """Flower's ``(user, password)``; created and shown once when ``create``."""
        if self.flower_file.exists():
            data = json.loads(self.flower_file.read_text())
            return data["user"], data["password"]
        if not create:
            return None
        password = secrets.token_urlsafe(18)
        write_secret(self.flower_file, {"user": FLOWER_USER, "password": password})
        self._say(
            f"flower: login {FLOWER_USER} / {password} (shown once; kept in {self.flower_file})",
            True,
        )
        return FLOWER_USER, password
