"""Small shared value types of the pure core."""

from __future__ import annotations


class _NotGivenType:
    """Marks "no value", which is different from a stored ``None``.

    A singleton: compare with ``is``. It is falsy so ``if value:`` reads naturally, and it
    pickles/copies to itself.
    """

    __slots__ = ()
    _instance: _NotGivenType | None = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NotGiven"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return (_NotGivenType, ())


NotGiven = _NotGivenType()
