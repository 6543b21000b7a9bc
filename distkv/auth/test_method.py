"""The ``_test`` auth method: a user name and nothing else.

For experiments and tests only (the tutorial uses it): anyone who knows a user name
can log in as that user. The user must exist, so ``user add`` still matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import AuthFailedError
from .base import AuthMethod


class TestMethod(AuthMethod):
    """Login with ``name=USER``; the record holds only the common items."""

    __test__ = False  # not a pytest test class, despite the name

    name = "_test"

    def make_user(self, params: Mapping[str, Any]) -> tuple[str, dict]:
        name = self.check_params(params)
        return name, self.common_items(params)

    def login_message(self, params: Mapping[str, Any]) -> dict:
        name = self.check_params({k: v for k, v in params.items() if k == "name"})
        return {"method": self.name, "name": name}

    def verify(self, msg: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
        name = msg.get("name")
        if record is None:
            raise AuthFailedError(f"there is no {self.name} user {name}")
        return name
