"""Topic names and filters: validation and MQTT matching. Pure."""

from __future__ import annotations

__all__ = ["PRESENCE", "topic_matches", "validate_pattern", "validate_topic"]

#: Topic suffix prefix of presence records: ``<root>/presence/<node>``.
PRESENCE = "presence"


def _check_common(s: str, what: str) -> None:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    if not s:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in s:
        raise ValueError(f"{what} must not contain NUL: {s!r}")
    if s.startswith("/") or s.endswith("/"):
        raise ValueError(f"{what} must not start or end with '/': {s!r}")


def validate_topic(topic: str, what: str = "topic") -> str:
    """Check a concrete topic suffix (no wildcards, no empty ends); return it."""
    _check_common(topic, what)
    if "+" in topic or "#" in topic:
        raise ValueError(f"{what} must not contain wildcards: {topic!r}")
    return topic


def validate_pattern(pattern: str) -> str:
    """Check a subscription pattern: ``+`` and ``#`` only as whole levels, ``#`` last."""
    _check_common(pattern, "pattern")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and i != len(levels) - 1:
                raise ValueError(f"'#' must be the last level: {pattern!r}")
        elif "+" in level or "#" in level:
            raise ValueError(f"wildcards must fill a whole level: {pattern!r}")
    return pattern


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching: ``+`` is one level, ``#`` the rest (including none:
    ``a/#`` matches ``a``)."""
    p = pattern.split("/")
    t = topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(p) == len(t)
