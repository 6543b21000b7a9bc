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


class attrdict(dict):
    """A dict whose keys can also be read as attributes (``res.value``).

    Results of client calls are attrdicts so both ``res.value`` and
    ``res.get("value")`` / ``"value" in res`` work, as the tutorial uses both.
    """

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class unwrap_group:
    """Context manager: re-raise a lone exception out of a trio ExceptionGroup.

    Our context managers run a nursery around the caller's code; without this, an
    ordinary ``ClientChainError`` raised in the body would surface wrapped in an
    ExceptionGroup, and ``except ClientChainError`` in user code would not catch it.
    """

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None or not isinstance(exc, BaseExceptionGroup):
            return False
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if isinstance(exc, BaseExceptionGroup):
            return False
        raise exc
