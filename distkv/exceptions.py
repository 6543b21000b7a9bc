"""The one error hierarchy of DistKV.

Every error a user can see is a :class:`DistKVError`. Errors that cross the client
protocol travel as ``{"error": CODE, "message": TEXT}``; :func:`error_from_wire` turns
them back into the same class on the client side, so a program can ``except
ClientChainError`` no matter where the check happened. The CLI prints
``ClassName: message`` for any of them and never a traceback.
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


class PermissionDenied(AuthError):
    """An ACL does not grant the right needed for this path."""

    code = "permission"


class StorageError(DistKVError):
    """The state directory or a state file is unusable."""

    code = "storage"


class NotReadyError(DistKVError):
    """The node has not finished syncing and cannot serve this request yet."""

    code = "not_ready"


def _all_subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE: dict[str, type[DistKVError]] = {c.code: c for c in _all_subclasses(DistKVError)}


def error_to_wire(exc: BaseException) -> dict:
    """Encode an exception as the protocol's error fields."""
    if isinstance(exc, DistKVError):
        return {"error": exc.code, "message": exc.message or str(exc)}
    return {"error": ServerError.code, "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(msg: dict) -> DistKVError:
    """Rebuild the exception a server reported (unknown codes map to ServerError)."""
    cls = _BY_CODE.get(msg.get("error"), ServerError)
    return cls(str(msg.get("message", "")))
