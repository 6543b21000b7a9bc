"""Auth methods: ``_test``, ``password``, ``root``; see :mod:`distkv.auth.base`."""

from .base import (
    COMMON_PARAMS,
    Ask,
    AuthMethod,
    LoginLimiter,
    default_prompt,
    get_method,
    method_names,
    parse_auth_spec,
    parse_params,
    register_method,
    resolve_params,
    start_login,
)

__all__ = [
    "COMMON_PARAMS",
    "Ask",
    "AuthMethod",
    "LoginLimiter",
    "default_prompt",
    "get_method",
    "method_names",
    "parse_auth_spec",
    "parse_params",
    "register_method",
    "resolve_params",
    "start_login",
]
