"""Errors keep their class and details across the wire, by the explicit registry."""

import pytest

from distkv.exceptions import (
    WIRE_CODES,
    AuthError,
    AuthFailedError,
    ClientChainError,
    DistKVError,
    PermissionDenied,
    ServerError,
    error_from_wire,
    error_to_wire,
)
from distkv.wire import codec


@pytest.mark.parametrize("cls", sorted(set(WIRE_CODES.values()), key=lambda c: c.code))
def test_every_registered_class_round_trips(cls):
    wire = codec.unpackb(codec.packb(error_to_wire(cls("it broke", where="here"))))
    back = error_from_wire(wire)
    assert type(back) is cls
    assert back.message == "it broke" and back.info == {"where": "here"}


def test_codes_are_unique_and_every_error_class_is_registered():
    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)

    for cls in subclasses(DistKVError):
        if cls.__module__ == "distkv.exceptions":
            assert WIRE_CODES.get(cls.code) is cls, cls


def test_an_unlisted_subclass_travels_as_its_base():
    class LocalChainError(ClientChainError):
        code = "local_only"

    assert type(error_from_wire(error_to_wire(LocalChainError("x")))) is ClientChainError


def test_unknown_code_names_itself():
    exc = error_from_wire({"error": "from_the_future", "message": "new"})
    assert type(exc) is ServerError
    assert "from_the_future" in str(exc) and exc.info["code"] == "from_the_future"


def test_authentication_and_authorisation_are_distinct():
    assert issubclass(AuthFailedError, AuthError)
    assert not issubclass(PermissionDenied, AuthError)
    assert not issubclass(AuthError, PermissionDenied)


def test_a_bug_is_a_server_error_with_its_type():
    wire = error_to_wire(KeyError("boom"))
    assert wire["error"] == ServerError.code and "KeyError" in wire["message"]
