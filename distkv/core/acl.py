"""Access control lists: pattern matching and permission checks (pure, no I/O).

An **ACL** is a named set of *rules*; a rule maps a path *pattern* to a *mode* string.
A pattern is a tuple of path elements in which two strings are wildcards:

* ``"+"`` matches exactly one element;
* ``"#"`` matches the rest of the path, zero or more elements. It may only be the last
  element of a pattern. ``wom.#`` therefore covers ``wom`` itself and everything below.

(As a consequence a literal path element ``"+"`` or ``"#"`` cannot be named on its own
by a pattern; the wildcards cover it.)

**Modes** are letters; a mode string is a set of them, printed in the order ``rwcdx``:

==== ============ ===========================================================
 r   read         get the value, see the entry in walks and watches
 w   overwrite    set an entry that currently has a value
 c   create       set an entry that has no value (new, deleted, intermediate)
 d   delete       delete the entry
 x   enter        pass through this entry to reach anything below it
==== ============ ===========================================================

``x`` is checked on every *proper, non-empty* prefix of a path: to touch
``wom.foo.bar`` you need ``x`` on ``wom`` and ``wom.foo`` (the root, the empty path, may
always be entered). Creating intermediate entries on the way needs only ``x``. There is
no separate "admin" letter: ACLs, users and groups live in the system tree, so the
right to change them is ``w``/``c``/``d`` on ``(None, "acl", ...)`` / ``(None, "auth",
...)``. The empty mode ``""`` is a valid rule that grants nothing; use it to carve an
exception out of a broader rule.

**Most specific rule wins** (inside one ACL; only that rule's mode counts), by the
order of :func:`~distkv.core.pattern.pattern_key`, shared with type and codec bindings:
compare two rules that match the same path element by element from the left; at the
first position where they differ, a literal element beats ``"+"``, ``"+"`` beats
``"#"``, and a rule that *ends* exactly there beats a ``"#"`` that matches zero
elements there. So: ``a.b`` > ``a.+`` > ``a.#`` > ``+.b`` > ``+.+`` > ``#``, and
``a.b.#`` > ``a.#`` (longer literal prefix). Two different rules never tie, so the
winner is the rule with the largest key among the matching ones.

**Deny by default**: if no rule matches, the ACL grants nothing.

**System tree**: a path whose first element is ``None``. A wildcard never matches that
leading ``None`` (neither ``+`` nor ``#``), so a pattern must start with ``None`` to
grant anything in the system tree.

**Several ACLs** (a user's own ACL plus one per group, see :class:`Grants`): each ACL
is evaluated on its own (its most specific rule), and a right is granted if *any* of
them grants it -- the union, per right and per path (also for the ``x`` on prefixes).

Element comparison uses ordinary dict keys, exactly as the entry tree does, so the
ACL sees the same entries the tree sees (``1``, ``1.0`` and ``True`` are the same key
in both).

**Storage**: rule ``pattern`` of ACL ``name`` is the tree entry ``(None, "acl", name,
*pattern)`` whose value is the mode string. A path may hold ``None`` only first, so a
system-tree pattern's leading ``None`` is stored as the element ``(None,)`` (and a
pattern may not start with a literal ``(None,)``); :func:`acl_path` and the readers
handle this. A user record (``(None, "auth", method,
"user", name)``, a mapping) binds ACLs with its ``"acl"`` item (a name or a list of
names) and group memberships with ``"groups"`` (a list of names); a group record at
``(None, "auth", "_group", name)`` binds its ACL with ``"acl"``. :class:`AclTable`
follows all of these from ``apply(path, value)`` calls, so the server rebuilds its
state by feeding it the system tree once and every later change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..exceptions import ClientError, PathError, PermissionDenied
from .path import Path
from .pattern import is_hash, is_plus, pattern_key
from .types import NotGiven

logger = logging.getLogger(__name__)

__all__ = [
    "ACL",
    "ACL_ROOT",
    "AUTH_ROOT",
    "GROUP_ROOT",
    "MODES",
    "AclTable",
    "Cursor",
    "Grants",
    "acl_path",
    "group_path",
    "mode_mask",
    "mode_str",
    "user_path",
]

# --- modes ----------------------------------------------------------------------------

MODES = "rwcdx"
"""All mode letters, in their canonical print order."""

_BIT = {m: 1 << i for i, m in enumerate(MODES)}
_X = _BIT["x"]
_ALL = (1 << len(MODES)) - 1
_WORDS = {
    "r": "read",
    "w": "overwrite",
    "c": "create",
    "d": "delete",
    "x": "enter",
}


def mode_mask(mode: str) -> int:
    """Turn a mode string (``"xc"``) into a bit mask; unknown letters are an error.

    Raises :class:`~distkv.exceptions.ClientError` naming the bad letter, because a
    mode typically comes straight from a user (``acl set NAME -a MODE PATTERN``).
    """
    if type(mode) is not str:
        raise ClientError(f"an ACL mode must be a string of letters from {MODES!r}")
    m = 0
    for c in mode:
        b = _BIT.get(c)
        if b is None:
            raise ClientError(f"unknown ACL mode letter {c!r} (known: {MODES})")
        m |= b
    return m


def mode_str(mask: int) -> str:
    """The canonical mode string of a bit mask (``"cx"``)."""
    return "".join(m for m in MODES if mask & _BIT[m])


# --- tree locations -------------------------------------------------------------------

ACL_ROOT = Path(None, "acl")
"""ACL rules live below this: ``ACL_ROOT + (name, *pattern)`` = mode string."""
AUTH_ROOT = Path(None, "auth")
"""Auth data: ``AUTH_ROOT + (method, "user", name)`` = user record."""
GROUP_ROOT = Path(None, "auth", "_group")
"""Group records: ``GROUP_ROOT + (name,)`` = ``{"acl": acl_name}``."""


_SYS = (None,)
"""Stand-in for a pattern's leading ``None`` inside a stored path."""


def acl_path(name: str, pattern: Iterable[Any] = ()) -> Path:
    """Where rule ``pattern`` of ACL ``name`` is stored (see "Storage" above)."""
    pattern = _check_pattern(pattern)
    if pattern and pattern[0] is None:
        pattern = (_SYS, *pattern[1:])
    return Path(None, "acl", name, *pattern)


def _decode_pattern(rel: Iterable[Any]) -> tuple:
    """The pattern of a stored rule, from its path relative to ``ACL_ROOT + (name,)``."""
    rel = tuple(rel)
    if rel and rel[0] == _SYS and type(rel[0]) is tuple:
        return (None, *rel[1:])
    return rel


def user_path(method: str, name: str) -> Path:
    """Where the record of user ``name`` of auth ``method`` is stored."""
    return Path(None, "auth", method, "user", name)


def group_path(name: str) -> Path:
    """Where the record of group ``name`` is stored."""
    return Path(None, "auth", "_group", name)


def _fmt(path: Iterable[Any]) -> str:
    """A path in its user-facing string form, for messages."""
    try:
        return str(Path.build(path))
    except PathError:
        return repr(tuple(path))


def _check_pattern(pattern: Iterable[Any]) -> tuple:
    """Validate a pattern and return it as a tuple.

    Checks the element types (via :class:`Path`) and that ``"#"`` is only last.
    """
    pattern = tuple(pattern)
    try:
        Path.build(pattern)
    except PathError as exc:
        raise ClientError(f"bad ACL pattern {pattern!r}: {exc}") from None
    for i, e in enumerate(pattern):
        if is_hash(e) and i != len(pattern) - 1:
            raise ClientError(f"'#' may only end an ACL pattern: {_fmt(pattern)}")
    if pattern and type(pattern[0]) is tuple and pattern[0] == (None,):
        raise ClientError("an ACL pattern may not start with (None,); use None for the system tree")
    return pattern


def _untuple(x: Any) -> Any:
    """msgpack turns tuples into lists; lists are never path elements, so undo it."""
    if isinstance(x, list):
        return tuple(_untuple(y) for y in x)
    return x


# --- one ACL --------------------------------------------------------------------------


class Rule:
    """One compiled rule: pattern, mode and its specificity.

    ``prio`` is the rank of ``key`` among the rules of its ACL, so comparing two
    matching rules costs one int comparison on the hot path.
    """

    __slots__ = ("pattern", "mode", "mask", "key", "prio")

    def __init__(self, pattern: tuple, mode: str):
        self.pattern = pattern
        self.mask = mode_mask(mode)
        self.mode = mode_str(self.mask)
        self.key = pattern_key(pattern)
        self.prio = 0

    def __repr__(self) -> str:
        return f"<Rule {_fmt(self.pattern)} {self.mode!r}>"


class _Node:
    """A trie node: one position in the patterns of an ACL."""

    __slots__ = ("lit", "plus", "end", "hash")

    def __init__(self):
        self.lit: dict[Any, _Node] | None = None
        self.plus: _Node | None = None
        self.end: Rule | None = None  # a rule ending exactly here
        self.hash: Rule | None = None  # a rule ending in "#" right here


# A per-ACL evaluation state after consuming a path prefix:
# (trie nodes whose pattern prefix matches, best "#" rule already covering >= 1 element)
_State = tuple  # tuple[tuple[_Node, ...], Rule | None]


class ACL:
    """A named, immutable set of rules, compiled into a trie for fast matching.

    ``rules`` maps pattern -> mode string (or is an iterable of such pairs). Patterns
    may be tuples, lists or :class:`Path`; modes are validated (``ClientError`` on a
    bad letter or pattern) and normalised to canonical order.
    """

    __slots__ = ("name", "_rules", "_root", "_start")

    def __init__(self, name: str, rules: Mapping[Any, str] | Iterable[tuple[Any, str]] = ()):
        self.name = name
        items = rules.items() if isinstance(rules, Mapping) else rules
        compiled: dict[tuple, Rule] = {}
        for pattern, mode in items:
            pattern = _check_pattern(_untuple(pattern) if isinstance(pattern, list) else pattern)
            compiled[pattern] = Rule(pattern, mode)
        for i, r in enumerate(sorted(compiled.values(), key=lambda r: r.key)):
            r.prio = i + 1
        self._rules = compiled
        root = _Node()
        for r in compiled.values():
            n = root
            pat = r.pattern
            last = len(pat) - 1
            for i, e in enumerate(pat):
                if i == last and is_hash(e):
                    n.hash = r
                    break
                if is_plus(e):
                    if n.plus is None:
                        n.plus = _Node()
                    n = n.plus
                else:
                    if n.lit is None:
                        n.lit = {}
                    c = n.lit.get(e)
                    if c is None:
                        c = n.lit[e] = _Node()
                    n = c
            else:
                n.end = r
        self._root = root
        self._start: _State = ((root,), None)

    # -- inspection --

    @property
    def rules(self) -> dict[tuple, str]:
        """pattern -> canonical mode string (a copy)."""
        return {p: r.mode for p, r in self._rules.items()}

    def __len__(self) -> int:
        return len(self._rules)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ACL):
            return NotImplemented
        return self.name == other.name and self.rules == other.rules

    def __hash__(self) -> int:
        return hash((self.name, frozenset(self.rules.items())))

    def __repr__(self) -> str:
        rules = ", ".join(f"{_fmt(p)}={r.mode!r}" for p, r in self._rules.items())
        return f"<ACL {self.name}: {rules}>"

    # -- derived ACLs --

    def with_rule(self, pattern: Iterable[Any], mode: str) -> ACL:
        """A copy with one rule added or replaced."""
        rules = self.rules
        rules[_check_pattern(pattern)] = mode
        return ACL(self.name, rules)

    def without_rule(self, pattern: Iterable[Any]) -> ACL:
        """A copy without the rule for ``pattern`` (no error if there is none)."""
        rules = self.rules
        rules.pop(tuple(pattern), None)
        return ACL(self.name, rules)

    # -- matching --

    def _step(self, state: _State, elem: Any, depth: int) -> _State:
        """Consume one path element. ``depth`` is the length of the prefix so far."""
        active, best_hash = state
        new: list[_Node] = []
        if depth == 0 and elem is None:
            # the system tree: no wildcard may match the leading None, and a root "#"
            # (which matched the empty prefix) must not carry over into it
            for n in active:
                if n.lit is not None:
                    c = n.lit.get(None)
                    if c is not None:
                        new.append(c)
            return (tuple(new), None)
        for n in active:
            if n.lit is not None:
                c = n.lit.get(elem)
                if c is not None:
                    new.append(c)
            if n.plus is not None:
                new.append(n.plus)
            h = n.hash
            if h is not None and (best_hash is None or h.prio > best_hash.prio):
                best_hash = h
        return (tuple(new), best_hash)

    @staticmethod
    def _winner(state: _State) -> Rule | None:
        """The most specific rule matching exactly the prefix consumed by ``state``."""
        active, best = state
        for n in active:
            r = n.end
            if r is not None and (best is None or r.prio > best.prio):
                best = r
            r = n.hash
            if r is not None and (best is None or r.prio > best.prio):
                best = r
        return best

    def rule_for(self, path: Iterable[Any]) -> Rule | None:
        """The most specific rule matching ``path``, or None (no traversal check)."""
        state = self._start
        for depth, elem in enumerate(path):
            state = self._step(state, elem, depth)
            if not state[0] and state[1] is None:
                return None
        return self._winner(state)

    def mask(self, path: Iterable[Any]) -> int:
        """The rights this ACL grants *on* ``path`` itself (no ``x`` check on prefixes)."""
        r = self.rule_for(path)
        return 0 if r is None else r.mask

    def modes(self, path: Iterable[Any]) -> str:
        """Like :meth:`mask`, as a mode string."""
        return mode_str(self.mask(path))

    # -- serialisation --

    def tree_items(self) -> list[tuple[Path, str]]:
        """``(path, mode)`` pairs as stored in the tree under :data:`ACL_ROOT`."""
        return [(acl_path(self.name, p), r.mode) for p, r in self._rules.items()]

    @classmethod
    def from_tree(cls, name: str, items: Iterable[tuple[Iterable[Any], Any]]) -> ACL:
        """Rebuild an ACL from a walk of its subtree ``ACL_ROOT + (name,)``.

        ``items`` are ``(relative path, value)`` pairs, the relative path being the
        pattern. Entries without a value (``NotGiven``: intermediate entries,
        tombstones) are skipped.
        """
        return cls(name, [(_decode_pattern(p), v) for p, v in items if v is not NotGiven])

    def to_dict(self) -> dict:
        """A msgpack-able form: ``{"name": ..., "rules": [[pattern-list, mode], ...]}``."""
        return {
            "name": self.name,
            "rules": [
                [list(p), r.mode]
                for p, r in sorted(self._rules.items(), key=lambda pr: pr[1].prio, reverse=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ACL:
        """Inverse of :meth:`to_dict` (also after a msgpack round trip)."""
        return cls(data["name"], [(_untuple(p), m) for p, m in data["rules"]])


# --- grants: what one session may do --------------------------------------------------


class _Missing:
    """Stands for a binding that leads to no ACL: it grants nothing, but restricts."""

    __slots__ = ("name", "reason")

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason


class Grants:
    """The effective rights of one session: the union of the ACLs bound to its user.

    Build it with :meth:`AclTable.grants` (live: picks up ACL and binding changes on
    the next check) or directly from ACL objects (fixed). A Grants with no ACLs at
    all is *unrestricted* (the tutorial's root user, or anyone before auth is on).

    Checks are cached per path (bounded), so the per-request hot path is one dict
    lookup; the cache is dropped whenever the ACL table changes.
    """

    CACHE_SIZE = 4096

    __slots__ = ("user", "_acls", "_table", "_method", "_gen", "_cache", "_unrestricted")

    def __init__(
        self,
        user: str | None,
        acls: Iterable[ACL | _Missing] = (),
        *,
        _table: AclTable | None = None,
        _method: str | None = None,
    ):
        self.user = user
        self._table = _table
        self._method = _method
        self._cache: dict[tuple, int] = {}
        if _table is None:
            self._set(tuple(acls))
            self._gen = 0
        else:
            self._refresh()

    @classmethod
    def unrestricted(cls, user: str | None = "root") -> Grants:
        """Grants that allow everything (implicit superuser, auth off)."""
        return cls(user, ())

    def _set(self, acls: tuple) -> None:
        self._acls = acls
        self._unrestricted = not acls
        self._cache.clear()

    def _refresh(self) -> None:
        t = self._table
        assert t is not None
        self._gen = t.generation
        self._set(t.acls_for(self._method, self.user))

    def _current(self) -> None:
        """A live Grants (built by :meth:`AclTable.grants`) picks up ACL and binding
        changes here, before every check: the table's generation says whether any."""
        t = self._table
        if t is not None and self._gen != t.generation:
            self._refresh()

    @property
    def is_unrestricted(self) -> bool:
        self._current()
        return self._unrestricted

    @property
    def acl_names(self) -> tuple[str, ...]:
        """Names of the bound ACLs (empty if unrestricted)."""
        self._current()
        return tuple(a.name for a in self._acls)

    # -- evaluation --

    def _compute(self, path: tuple) -> int:
        """Effective mask on ``path``: union over ACLs, 0 unless every prefix has x."""
        acls = [a for a in self._acls if isinstance(a, ACL)]
        states = [a._start for a in acls]
        for depth, elem in enumerate(path):
            if depth:
                m = 0
                for a, s in zip(acls, states, strict=True):
                    r = a._winner(s)
                    if r is not None:
                        m |= r.mask
                if not m & _X:
                    return 0
            states = [a._step(s, elem, depth) for a, s in zip(acls, states, strict=True)]
        m = 0
        for a, s in zip(acls, states, strict=True):
            r = a._winner(s)
            if r is not None:
                m |= r.mask
        return m

    def mask(self, path: Iterable[Any]) -> int:
        """The rights on ``path`` as a bit mask, including the ``x`` check on prefixes."""
        self._current()
        if self._unrestricted:
            return _ALL
        path = tuple(path)
        m = self._cache.get(path)
        if m is None:
            m = self._compute(path)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[path] = m
        return m

    def modes(self, path: Iterable[Any]) -> str:
        """The rights on ``path`` as a mode string (for ``acl test``-style display)."""
        return mode_str(self.mask(path))

    def allowed(self, path: Iterable[Any], mode: str) -> bool:
        """Whether every letter of ``mode`` is granted on ``path``."""
        need = _BIT.get(mode) or mode_mask(mode)
        return self.mask(path) & need == need

    def check(self, path: Iterable[Any], mode: str) -> None:
        """Raise :class:`PermissionDenied` unless every letter of ``mode`` is granted.

        The message names the user, the right in words, the path, and what each bound
        ACL grants there, e.g. ``joe may not overwrite wom.foo.bar (ACL writeonly
        grants 'cx' via wom.#)``.
        """
        need = _BIT.get(mode) or mode_mask(mode)
        path = tuple(path)
        if self.mask(path) & need != need:
            raise PermissionDenied(self._explain(path, need), path=path, mode=mode)

    def cursor(self) -> Cursor:
        """A cursor at the root, for walking a subtree without per-path lookups."""
        self._current()
        acls = tuple(a for a in self._acls if isinstance(a, ACL))
        return Cursor(
            self, acls, tuple(a._start for a in acls), 0, _ALL if self._unrestricted else None
        )

    # -- messages --

    def _explain(self, path: tuple, need: int) -> str:
        """Say in words why ``need`` is not granted on ``path`` (slow path, errors only)."""
        who = self.user if self.user is not None else "this client"
        for i in range(1, len(path)):
            prefix = path[:i]
            if not self._union(prefix) & _X:
                return (
                    f"{who} may not enter {_fmt(prefix)} on the way to {_fmt(path)} "
                    f"({self._reasons(prefix)})"
                )
        have = self._union(path)
        missing = mode_str(need & ~have)
        words = " or ".join(_WORDS[m] for m in missing)
        return f"{who} may not {words} {_fmt(path)} ({self._reasons(path)})"

    def _union(self, path: tuple) -> int:
        m = 0
        for a in self._acls:
            if isinstance(a, ACL):
                m |= a.mask(path)
        return m

    def _reasons(self, path: tuple) -> str:
        out = []
        for a in self._acls:
            if isinstance(a, _Missing):
                out.append(a.reason)
                continue
            r = a.rule_for(path)
            if r is None:
                out.append(f"ACL {a.name} has no rule for it")
            elif r.mode:
                out.append(f"ACL {a.name} grants '{r.mode}' via {_fmt(r.pattern)}")
            else:
                out.append(f"ACL {a.name} grants nothing via {_fmt(r.pattern)}")
        return "; ".join(out)


class Cursor:
    """A position in a walk: the rights on one path, stepping to children cheaply.

    ``cursor.child(elem)`` costs one trie step per ACL, so a server walking a subtree
    (get_tree, watch) pays per entry, not per path length. A child of an entry without
    ``x`` (except the root) is *dead*: nothing below it is granted.
    """

    __slots__ = ("_grants", "_acls", "_states", "_depth", "_mask")

    def __init__(self, grants: Grants, acls: tuple, states: tuple, depth: int, mask: int | None):
        self._grants = grants
        self._acls = acls
        self._states = states
        self._depth = depth
        self._mask = mask

    @property
    def mask(self) -> int:
        """The rights on the cursor's path (x on prefixes already accounted for)."""
        m = self._mask
        if m is None:
            m = 0
            for a, s in zip(self._acls, self._states, strict=True):
                r = a._winner(s)
                if r is not None:
                    m |= r.mask
            self._mask = m
        return m

    def allowed(self, mode: str) -> bool:
        """Whether every letter of ``mode`` is granted here."""
        need = _BIT.get(mode) or mode_mask(mode)
        return self.mask & need == need

    @property
    def can_enter(self) -> bool:
        """Whether anything below may be granted (the root may always be entered)."""
        return self._depth == 0 or bool(self.mask & _X)

    def child(self, elem: Any) -> Cursor:
        """The cursor one element further down."""
        if self._grants._unrestricted:
            return Cursor(self._grants, (), (), self._depth + 1, _ALL)
        if not self.can_enter:
            return Cursor(self._grants, (), (), self._depth + 1, 0)
        d = self._depth
        states = tuple(a._step(s, elem, d) for a, s in zip(self._acls, self._states, strict=True))
        return Cursor(self._grants, self._acls, states, d + 1, None)


# --- the live table ------------------------------------------------------------------


def _names(v: Any) -> tuple[str, ...]:
    """An ACL/group binding: a name or a list of names (anything else binds nothing)."""
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list | tuple):
        return tuple(x for x in v if isinstance(x, str))
    return ()


class AclTable:
    """The server's live view of ACLs, user bindings and groups.

    Feed it every value under ``(None, "acl")`` and ``(None, "auth")`` with
    :meth:`apply` (at start-up from a walk, then on each change, local or replicated;
    a deletion is ``value=NotGiven``). :meth:`grants` returns a :class:`Grants` that
    re-reads the table when :attr:`generation` moves, so ACL edits apply to sessions
    that are already logged in.

    Binding rules: a user is *restricted* as soon as its record names an ACL or any
    group; it then gets the union of its own ACL and its groups' ACLs. Names that do
    not exist (ACL or group) grant nothing but still restrict -- failing closed. A
    user with neither is unrestricted, as the tutorial's root user.
    """

    def __init__(self):
        self._rules: dict[str, dict[tuple, str]] = {}
        self._compiled: dict[str, ACL] = {}
        self._users: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        self.generation = 0

    def apply(self, path: Iterable[Any], value: Any) -> bool:
        """Take note of a changed system entry; return whether it mattered here."""
        path = tuple(path)
        if len(path) < 3 or path[0] is not None:
            return False
        kind = path[1]
        if kind == "acl":
            return self._apply_rule(path[2], path[3:], value)
        if kind != "auth":
            return False
        if len(path) == 4 and path[2] == "_group":
            name = path[3]
            if value is NotGiven or not isinstance(value, Mapping):
                self._groups.pop(name, None)
            else:
                self._groups[name] = _names(value.get("acl"))
            self.generation += 1
            return True
        if len(path) == 5 and path[3] == "user":
            key = (path[2], path[4])
            if value is NotGiven or not isinstance(value, Mapping):
                self._users.pop(key, None)
            else:
                self._users[key] = (_names(value.get("acl")), _names(value.get("groups")))
            self.generation += 1
            return True
        return False

    def _apply_rule(self, name: Any, rel: tuple, value: Any) -> bool:
        """A rule entry changed. Bad data is logged and fails closed, never raises."""
        if not isinstance(name, str):
            return False
        pattern = _decode_pattern(rel)
        if value is NotGiven:
            rules = self._rules.get(name)
            if rules is None or rules.pop(pattern, None) is None:
                return False
            if not rules:
                del self._rules[name]
        else:
            try:
                _check_pattern(pattern)
            except ClientError as exc:
                logger.warning("ACL %s: ignoring rule with a bad pattern: %s", name, exc)
                return False
            try:
                mode_mask(value)
            except ClientError as exc:
                logger.warning("ACL %s: rule %s grants nothing: %s", name, _fmt(pattern), exc)
                value = ""
            self._rules.setdefault(name, {})[pattern] = value
        self._compiled.pop(name, None)
        self.generation += 1
        return True

    def acl(self, name: str) -> ACL | None:
        """The current ACL called ``name``, or None if it has no rules."""
        a = self._compiled.get(name)
        if a is None:
            rules = self._rules.get(name)
            if rules is None:
                return None
            a = self._compiled[name] = ACL(name, rules)
        return a

    def names(self) -> list[str]:
        """Names of all ACLs that have at least one rule."""
        return sorted(self._rules)

    def acls_for(self, method: str | None, user: str | None) -> tuple:
        """The ACLs bound to ``user`` of ``method`` (directly and via groups), in order.

        Empty means unrestricted. Missing ACLs/groups are represented so that they
        restrict and show up in error messages.
        """
        if user is None or method is None:
            return ()
        own, groups = self._users.get((method, user), ((), ()))
        out: list[ACL | _Missing] = []
        seen: set[str] = set()

        def add(n: str) -> None:
            if n not in seen:
                seen.add(n)
                a = self.acl(n)
                out.append(a if a is not None else _Missing(n, f"ACL {n} does not exist"))

        for n in own:
            add(n)
        for g in groups:
            bound = self._groups.get(g)
            if not bound:
                out.append(_Missing(g, f"group {g} has no ACL"))
            for n in bound or ():
                add(n)
        return tuple(out)

    def grants(self, method: str | None, user: str | None) -> Grants:
        """Live grants for a logged-in user (``method``/``user`` from the login)."""
        return Grants(user, _table=self, _method=method)
