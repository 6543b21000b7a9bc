"""Trio runs our context managers' bodies inside nurseries; this keeps their errors plain."""

from __future__ import annotations


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
