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
        # Raised here, the error's context would be the group that wrapped it, and an
        # uncaught one would print its traceback twice ("During handling of the above
        # exception..."): the group is plumbing, not part of the story.
        exc.__suppress_context__ = True
        raise exc
