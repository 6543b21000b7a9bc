"""The type of every client result: a dict whose keys read as attributes."""

from __future__ import annotations


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
