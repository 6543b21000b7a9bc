"""Client side of logging in: turn ``connect.auth`` / ``-a`` into an ``auth`` request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..auth.base import get_method, parse_auth_spec, resolve_params

if TYPE_CHECKING:
    from .client import Client


async def login(client: Client, spec: str | dict[str, Any]) -> None:
    """Log in with a spec like ``"password name=joe password?=Code"``.

    ``key?=Prompt`` items are asked for (without echo on a terminal). A mapping
    ``{"method": ..., "name": ..., ...}`` is taken as already resolved.
    """
    if isinstance(spec, dict):
        method_name = spec["method"]
        params = {k: v for k, v in spec.items() if k != "method"}
    else:
        method_name, raw = parse_auth_spec(spec)
        params = resolve_params(raw)
    msg = get_method(method_name).login_message(params)
    await client.login(msg)
