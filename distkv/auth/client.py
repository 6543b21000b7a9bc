"""Client side of logging in: turn ``connect.auth`` / ``-a`` into an ``auth`` request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .base import get_method, parse_auth_spec, resolve_params

if TYPE_CHECKING:
    from ..client import Client


async def login(client: Client, spec: str | dict[str, Any]) -> None:
    """Log in with a spec like ``"password name=joe password?=Code"``.

    ``key?=Prompt`` items are asked for (without echo on a terminal). A mapping
    ``{"method": ..., "name": ..., ...}`` is taken as already resolved.
    """
    res = await client.request("auth", **login_message(spec))
    client.user = res.user


def login_message(spec: str | Mapping[str, Any]) -> dict:
    """The body of the ``auth`` request for a login spec (see :func:`login`); also
    used by the CLI's blocking one-shot client."""
    if isinstance(spec, Mapping):
        method_name = spec["method"]
        params = {k: v for k, v in spec.items() if k != "method"}
    else:
        method_name, raw = parse_auth_spec(spec)
        params = resolve_params(raw)
    return get_method(method_name).login_message(params)
