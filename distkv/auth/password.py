"""The ``password`` auth method: user name plus password, checked against a salted hash.

The user record holds ``{"password": HASH}`` where HASH is a passlib
``pbkdf2_sha256`` string (``$pbkdf2-sha256$ROUNDS$SALT$DIGEST``): salted, and
self-describing, so the round count can be raised later without breaking old records.
The password itself is never stored and never appears in an error message.

Why pbkdf2_sha256: it is pure hashlib; passlib 1.7.4's bcrypt support is broken with
bcrypt >= 4.1 (see FIELD-NOTES). Why :data:`DEFAULT_ROUNDS` = 20000: a login must take at
most 50 ms on the small machines DistKV runs on. One verify costs ~4 ms on the 2-core
Xeon reference machine (0.21 us per round); a Raspberry Pi is roughly 5-10x slower, which
still fits. The server runs :meth:`PasswordMethod.verify` in a worker thread
(``slow = True``) so hashing never stalls the event loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from ..exceptions import AuthFailedError, ClientError
from .base import AuthMethod

# This module is the only passlib importer. passlib 1.7.4 imports the stdlib 'crypt'
# module, which is deprecated since Python 3.11 and warns on import; the warning is
# about passlib's internals, not our use, so it is silenced here and only here.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="'crypt' is deprecated", category=DeprecationWarning)
    from passlib.hash import pbkdf2_sha256

DEFAULT_ROUNDS = 20000
"""pbkdf2-sha256 iterations for new hashes; see the module docstring for the choice."""


class PasswordMethod(AuthMethod):
    """Login with ``name=USER password=SECRET`` (``password?=Prompt`` asks for it)."""

    name = "password"
    slow = True
    user_params = frozenset({"password"})

    def __init__(self, rounds: int = DEFAULT_ROUNDS):
        self.rounds = rounds
        self._hasher = pbkdf2_sha256.using(rounds=rounds)
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """A fresh salted hash of ``password``."""
        if not isinstance(password, str) or not password:
            raise ClientError("the password must be a non-empty string")
        return self._hasher.hash(password)

    def make_user(self, params: Mapping[str, Any]) -> tuple[str, dict]:
        name = self.check_params(params)
        if "password" not in params:
            raise ClientError("the password method needs password=... (or password?=Prompt)")
        record = self.common_items(params)
        record["password"] = self.hash(params["password"])
        return name, record

    def update_user(self, record: Mapping[str, Any], params: Mapping[str, Any]) -> dict:
        params = dict(params)
        password = params.pop("password", None)
        new = super().update_user(record, params)
        if password is not None:
            new["password"] = self.hash(password)
        return new

    def login_message(self, params: Mapping[str, Any]) -> dict:
        name = params.get("name")
        password = params.get("password")
        if not isinstance(name, str) or not name or not isinstance(password, str):
            raise ClientError(
                "the password login needs name=USER and password=... (or password?=Prompt)"
            )
        return {"method": self.name, "name": name, "password": password}

    def verify(self, msg: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
        name = msg.get("name")
        password = msg.get("password")
        # One message for both "no such user" and "wrong password", and the same work
        # in both cases, so neither the text nor the timing tells which users exist.
        failed = AuthFailedError(f"login failed for {name}: unknown user or wrong password")
        if not isinstance(password, str):
            raise failed
        stored = record.get("password") if isinstance(record, Mapping) else None
        if not isinstance(stored, str):
            self._verify_dummy(password)
            raise failed
        try:
            ok = pbkdf2_sha256.verify(password, stored)
        except (ValueError, TypeError):
            raise AuthFailedError(
                f"login failed for {name}: the stored password record is unusable"
            ) from None
        if not ok:
            raise failed
        return name

    def _verify_dummy(self, password: str) -> None:
        """Spend the time of a real verify (unknown user: do not leak via timing)."""
        if self._dummy is None:
            self._dummy = self._hasher.hash("not a password")
        pbkdf2_sha256.verify(password, self._dummy)
