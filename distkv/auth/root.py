"""The ``root`` auth method: no credentials at all.

It stands for the implicit superuser a client is before ``auth init`` switches a real
method on (and if someone switches ``root`` itself on, auth stays effectively off).
There are no user records; every login yields the user ``root``, unrestricted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ClientError
from .base import AuthMethod


class RootMethod(AuthMethod):
    """Anyone is ``root``; nothing is stored or checked."""

    name = "root"
    needs_login = False

    def make_user(self, params: Mapping[str, Any]) -> tuple[str, dict]:
        raise ClientError("the root auth method has no users to add")

    def login_message(self, params: Mapping[str, Any]) -> dict:
        return {"method": self.name}

    def verify(self, msg: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
        return "root"
