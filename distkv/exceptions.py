"""The one error hierarchy of DistKV.

Every error a user can see is a :class:`DistKVError`. Errors that cross the client
protocol travel as ``{"error": CODE, "message": TEXT, "info": {...}}``; the codes are
listed once, explicitly, in :data:`WIRE_CODES` (a class that is not listed travels as
its nearest listed base). :func:`error_from_wire` turns them back into the same class
with the same details on the client side (a ``PermissionDenied`` keeps its ``path``
and ``mode``), so a program can ``except ClientChainError`` no matter where the check
happened. The CLI prints ``ClassName: message`` for any of them, never a traceback.

Authentication (who are you: :class:`AuthError` and its subclasses) and
authorisation (what may you do: :class:`PermissionDenied`) are separate branches.
"""

from __future__ import annotations


class DistKVError(Exception):
    """Base class of all DistKV errors."""

    code: str = "error"

    def __init__(self, message: str = "", **info):
        super().__init__(message)
        self.message = message
        self.info = info

    def __str__(self) -> str:
        return self.message or self.__class__.__name__


class ConfigError(DistKVError):
    """The configuration is unusable (bad file, bad ``-C`` override)."""

    code = "config"


class PathError(DistKVError, ValueError):
    """A path string or element is malformed."""

    code = "path"


class ProtocolError(DistKVError):
    """The peer sent something that is not valid DistKV protocol."""

    code = "protocol"


class ServerError(DistKVError):
    """The server could not carry out a request (the generic server-side failure)."""

    code = "server"


class ServerClosedError(DistKVError):
    """The connection to the server ended."""

    code = "closed"


class ClientError(DistKVError):
    """The request itself is wrong: bad arguments, unknown action, wrong types."""

    code = "client"


class UnknownActionError(ClientError):
    code = "unknown_action"


class ValueTypeError(ClientError):
    """A value cannot be stored (not msgpack-able, or rejected by a type check)."""

    code = "value"


class ScriptError(ClientError):
    """Stored code (a type check, a codec) does not compile, or its examples fail."""

    code = "script"


class NoDataError(ClientError):
    """There is no value at this path."""

    code = "no_data"


class ClientChainError(ClientError):
    """The entry changed since the chain the client passed (optimistic concurrency)."""

    code = "chain"


class StreamOverflowError(ClientError):
    """A stream fell too far behind and was cut off; re-fetch to resynchronise."""

    code = "overflow"


class AuthError(DistKVError):
    """Base of authentication problems."""

    code = "auth"


class ClientAuthRequiredError(AuthError):
    """The server requires a login and the client did not send one."""

    code = "auth_required"


class AuthFailedError(AuthError):
    """Login was refused (wrong password, unknown user, wrong method)."""

    code = "auth_failed"


class PermissionDenied(DistKVError):
    """An ACL does not grant the right needed for this path (authorisation, not
    authentication: the user is known). ``info``: ``path``, ``mode`` where known."""

    code = "permission"


class StorageError(DistKVError):
    """The state directory or a state file is unusable."""

    code = "storage"


class NotReadyError(DistKVError):
    """The node has not finished syncing and cannot serve this request yet."""

    code = "not_ready"


#: The wire code of every error class, written out: the protocol's error registry.
WIRE_CODES: dict[str, type[DistKVError]] = {
    cls.code: cls
    for cls in (
        DistKVError,
        ConfigError,
        PathError,
        ProtocolError,
        ServerError,
        ServerClosedError,
        ClientError,
        UnknownActionError,
        ValueTypeError,
        ScriptError,
        NoDataError,
        ClientChainError,
        StreamOverflowError,
        AuthError,
        ClientAuthRequiredError,
        AuthFailedError,
        PermissionDenied,
        StorageError,
        NotReadyError,
    )
}

_INFO_TYPES = (str, int, float, bool, type(None), bytes)


def _wire_info(info: dict) -> dict:
    """The details that can travel: simple values and tuples of them (paths)."""
    out = {}
    for k, v in info.items():
        if isinstance(v, _INFO_TYPES) or (
            isinstance(v, tuple | list) and all(isinstance(x, _INFO_TYPES) for x in v)
        ):
            out[k] = v
    return out


def error_to_wire(exc: BaseException) -> dict:
    """Encode an exception as the protocol's error fields."""
    if isinstance(exc, DistKVError):
        cls = type(exc)
        while cls.code not in WIRE_CODES or WIRE_CODES[cls.code] is not cls:
            cls = cls.__mro__[1]  # an unlisted subclass travels as its listed base
        msg = {"error": cls.code, "message": exc.message or str(exc)}
        info = _wire_info(exc.info) if exc.info else None
        if info:
            msg["info"] = info
        return msg
    return {"error": ServerError.code, "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(msg: dict) -> DistKVError:
    """Rebuild the exception a server reported, details included. An unknown code (a
    newer server) becomes a :class:`ServerError` that names it."""
    code = msg.get("error")
    message = str(msg.get("message", ""))
    info = msg.get("info")
    info = {str(k): v for k, v in info.items()} if isinstance(info, dict) else {}
    info.pop("message", None)
    cls = WIRE_CODES.get(code) if isinstance(code, str) else None
    if cls is None:
        info["code"] = code
        return ServerError(f"{code}: {message}", **info)
    return cls(message, **info)
