"""The interface of auth methods, their registry, CLI parameter parsing, rate limiting.

An auth method is a plugin: an :class:`AuthMethod` subclass registered by name
(``_test``, ``password``, ``root`` are built in and imported lazily, so passlib is
only loaded when the password method is actually used). A method decides

* what a user record holds (stored at ``(None, "auth", method, "user", name)``,
  see :func:`distkv.core.acl.user_path`) -- :meth:`AuthMethod.make_user`;
* what a client sends to log in -- :meth:`AuthMethod.login_message`;
* how the server verifies that message -- :meth:`AuthMethod.verify`.

User records are mappings. Besides the method's own items they may carry the common
items ``acl`` (an ACL name or a list) and ``groups`` (a list of group names), which
:class:`distkv.core.acl.AclTable` reads.

Server login flow (see :func:`start_login`)::

    guard.attempt(now, host, name)                          # refuse if locked out
    method, name = start_login(current_method, msg)         # cheap, checks the shape
    record = tree value at user_path(method.name, name)     # None if absent
    if method.slow:                                          # password: hashing
        user = await trio.to_thread.run_sync(method.verify, msg, record)
    else:
        user = method.verify(msg, record)
    # and in every case: guard.finished(now, host, name, ok)   (Server.verify_login)
"""

from __future__ import annotations

import getpass
import importlib
import shlex
import sys
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..exceptions import AuthError, AuthFailedError, ClientAuthRequiredError, ClientError

__all__ = [
    "COMMON_PARAMS",
    "Ask",
    "AuthMethod",
    "LoginGuard",
    "LoginLimiter",
    "default_prompt",
    "get_method",
    "login_message",
    "method_names",
    "parse_auth_spec",
    "parse_params",
    "register_method",
    "resolve_params",
    "start_login",
    "unregister_method",
]

COMMON_PARAMS = frozenset({"acl", "groups"})
"""User-record items every method accepts (they bind ACLs; see distkv.core.acl)."""


# --- CLI-style parameters -------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """A parameter whose value must be asked for (``password?=Code`` -> Ask("Code")).

    The repr never shows a value because there is none yet; the CLI resolves it.
    """

    prompt: str


def parse_params(items: Iterable[str]) -> dict[str, str | Ask]:
    """Parse ``k=v`` items; ``k?=Prompt`` gives an :class:`Ask` marker.

    The value is everything after the first ``=``, so ``pw=a=b`` is ``"a=b"``. A later
    item replaces an earlier one with the same key.
    """
    out: dict[str, str | Ask] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key or key == "?":
            raise ClientError(f"expected key=value or key?=Prompt, not {item.split('=')[0]!r}")
        if key.endswith("?"):
            out[key[:-1]] = Ask(val or key[:-1])
        else:
            out[key] = val
    return out


def default_prompt(text: str) -> str:
    """Ask the user: without echo on a terminal, else read one line from stdin.

    Reading a plain line when stdin is not a tty lets scripts pipe secrets in
    (``echo $PW | distkv client -a "password name=joe password?=Code" ...``).
    """
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"{text}: ")
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise AuthError(f"no input for {text!r}: stdin is closed")
    return line.rstrip("\r\n")


def resolve_params(
    items: Iterable[str] | Mapping[str, str | Ask],
    prompt: Callable[[str], str] = default_prompt,
) -> dict[str, str]:
    """Parse ``k=v`` / ``k?=Prompt`` items (or take a parsed dict) and ask for the latter.

    ``prompt(text)`` is called once per :class:`Ask`, in item order.
    """
    params = dict(items) if isinstance(items, Mapping) else parse_params(items)
    return {k: prompt(v.prompt) if isinstance(v, Ask) else v for k, v in params.items()}


def parse_auth_spec(spec: str) -> tuple[str, dict[str, str | Ask]]:
    """Split a ``-a``/``connect.auth`` string: ``"password name=joe password?=Code"``.

    Shell-style quoting is honoured, so values may contain spaces.
    """
    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise ClientError(f"cannot parse the auth spec: {exc}") from None
    if not words:
        raise ClientError("the auth spec is empty; expected 'METHOD key=value ...'")
    return words[0], parse_params(words[1:])


# --- methods --------------------------------------------------------------------------


class AuthMethod(ABC):
    """One way of logging in. Subclasses set :attr:`name` and implement the three steps.

    Instances are stateless apart from configuration, so one per name is shared.
    """

    name: ClassVar[str]
    needs_login: ClassVar[bool] = True
    """False only for ``root``: the implicit superuser when auth is off."""
    slow: ClassVar[bool] = False
    """True if :meth:`verify` burns CPU (hashing): run it in a worker thread."""
    user_params: ClassVar[frozenset[str]] = frozenset()
    """Method-specific user-record parameters accepted by :meth:`make_user`."""

    @abstractmethod
    def make_user(self, params: Mapping[str, Any]) -> tuple[str, dict]:
        """Build ``(name, record)`` for ``user add`` from resolved CLI parameters."""

    def update_user(self, record: Mapping[str, Any], params: Mapping[str, Any]) -> dict:
        """A new record with ``params`` changed (``user set param joe acl writeonly``).

        The default handles the common items; methods extend it for their own.
        """
        new = dict(record)
        for k, v in params.items():
            if k == "name":
                continue
            if k not in COMMON_PARAMS:
                raise ClientError(f"the {self.name} method has no user parameter {k!r}")
            new[k] = _common_value(k, v)
        return new

    @abstractmethod
    def login_message(self, params: Mapping[str, Any]) -> dict:
        """The login request body (``{"method": ..., ...}``) from resolved parameters."""

    @abstractmethod
    def verify(self, msg: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
        """Check a login against the user's record (None if no such user).

        Returns the user name; raises :class:`AuthFailedError` whose message never
        contains a secret.
        """

    def common_items(self, params: Mapping[str, Any]) -> dict:
        """The common items of ``params`` (``acl``, ``groups``) as they go into a
        record; public because every method's :meth:`make_user` needs them."""
        return {k: _common_value(k, v) for k, v in params.items() if k in COMMON_PARAMS}

    def check_params(self, params: Mapping[str, Any]) -> str:
        """Reject unknown parameters and return the user name: the first step of
        every :meth:`make_user`, public so that a method written elsewhere (a plugin)
        refuses a typo the same way the built-in ones do."""
        unknown = set(params) - COMMON_PARAMS - self.user_params - {"name"}
        if unknown:
            raise ClientError(
                f"the {self.name} method has no user parameter(s) {', '.join(sorted(unknown))}"
            )
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise ClientError(f"the {self.name} method needs name=USER")
        return name


def _common_value(key: str, v: Any) -> Any:
    """Normalise ``acl``/``groups``: CLI strings may list names separated by commas."""
    if isinstance(v, str):
        names = [x for x in v.split(",") if x]
        if key == "acl":
            return names[0] if len(names) == 1 else names or None
        return names
    return v


_BUILTIN: dict[str, str] = {
    "_test": "distkv.auth.test_method:TestMethod",
    "password": "distkv.auth.password:PasswordMethod",
    "root": "distkv.auth.root:RootMethod",
}
_methods: dict[str, AuthMethod] = {}


def register_method(method: AuthMethod) -> None:
    """Make ``method`` available under ``method.name`` (replacing a previous one)."""
    _methods[method.name] = method


def unregister_method(name: str) -> None:
    """Forget the method registered as ``name`` (no-op if none). A built-in one is
    imported afresh on its next use; a plugin's is gone. Lets whoever registered a
    method (a plugin being unloaded, a test) undo it without touching the registry."""
    _methods.pop(name, None)


def get_method(name: str) -> AuthMethod:
    """The method called ``name``; built-in ones are imported on first use."""
    m = _methods.get(name)
    if m is not None:
        return m
    where = _BUILTIN.get(name)
    if where is None:
        raise AuthError(f"there is no auth method {name!r} (known: {', '.join(method_names())})")
    mod, cls = where.split(":")
    m = getattr(importlib.import_module(mod), cls)()
    _methods[name] = m
    return m


def method_names() -> list[str]:
    """Names of all known methods (built-in and registered)."""
    return sorted(set(_BUILTIN) | set(_methods))


def start_login(current: str | None, msg: Mapping[str, Any] | None) -> tuple[AuthMethod, str]:
    """First, cheap step of a server-side login: pick the method and the user name.

    ``current`` is the method switched on by ``auth init`` (None: auth is off, and the
    client is the implicit ``root`` superuser whatever it sends -- peers may send
    ``connect.auth`` regardless). Raises :class:`ClientAuthRequiredError` if a login is
    required and missing, :class:`AuthFailedError` if it uses another method.
    """
    if current is None or not get_method(current).needs_login:
        return get_method("root"), "root"
    if not msg:
        raise ClientAuthRequiredError(f"You need to log in using: {current}")
    used = msg.get("method")
    if used != current:
        raise AuthFailedError(
            f"this server uses the {current} auth method, not {used}"
            if isinstance(used, str)
            else f"the login names no auth method; use {current}"
        )
    name = msg.get("name")
    if not isinstance(name, str) or not name:
        raise AuthFailedError(f"the {current} login needs a user name")
    return get_method(current), name


# --- rate limiting --------------------------------------------------------------------


class LoginLimiter:
    """Refuse logins after too many failures, per key (a user name, an address, ...).

    Pure: the caller passes ``now`` (seconds, any monotonic base). After
    ``max_failures`` failures within ``window`` seconds a key is locked for
    ``lockout`` seconds. Memory is bounded: at most ``max_keys`` keys are tracked,
    the least recently failed are forgotten first.

    Locking by user name lets an attacker lock a user out; keeping separate, larger
    limits per user than per address (two limiters) softens that.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 60.0,
        lockout: float = 300.0,
        max_keys: int = 10000,
    ):
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_keys = max_keys
        self._fails: OrderedDict[Any, list[float]] = OrderedDict()
        self._locked: dict[Any, float] = {}

    @property
    def failing_keys(self) -> int:
        """How many keys have recent failures remembered (at most ``max_keys``)."""
        return len(self._fails)

    @property
    def locked_keys(self) -> int:
        """How many keys are held as locked (expired locks are dropped lazily: on
        their next check, or once more than ``max_keys`` are held)."""
        return len(self._locked)

    def locked_for(self, now: float, key: Any) -> float:
        """Seconds until ``key`` may try again (0 if it may now)."""
        until = self._locked.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._locked[key]
            return 0.0
        return until - now

    def check(self, now: float, *keys: Any) -> None:
        """Raise :class:`AuthFailedError` if any of ``keys`` is locked out."""
        wait = max((self.locked_for(now, k) for k in keys), default=0.0)
        if wait > 0:
            raise AuthFailedError(f"too many failed logins; try again in {int(wait) + 1} seconds")

    def failed(self, now: float, *keys: Any) -> None:
        """Record one failed login for each of ``keys``."""
        for key in keys:
            times = self._fails.pop(key, [])
            times = [t for t in times if t > now - self.window]
            times.append(now)
            if len(times) >= self.max_failures:
                self._locked[key] = now + self.lockout
                times = []
            if times:
                self._fails[key] = times
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)
        if len(self._locked) > self.max_keys:
            for k in [k for k, u in self._locked.items() if u <= now]:
                del self._locked[k]

    def succeeded(self, *keys: Any) -> None:
        """Forget the failures of ``keys`` (a lockout in force stays)."""
        for key in keys:
            self._fails.pop(key, None)

    def recent(self, now: float, key: Any) -> int:
        """Failures of ``key`` within the window."""
        return sum(t > now - self.window for t in self._fails.get(key, ()))


class LoginGuard:
    """The login limits of a node: per (client address, user name), and a looser one
    per address. Pure, like :class:`LoginLimiter`; ``Server.verify_login`` uses it for
    client sessions and the web service's ``/metrics`` alike.

    Why per (address, user): counted per address alone, one client with a wrong
    password locked out every client of its host: a Prometheus job on the node's own
    host, retrying every 15 s, kept the node's runners, gateways and CLI on
    127.0.0.1 refused for good. Now a wrong password locks only that user from that
    address, which is all a password guesser needs to be slowed down by, and nobody
    can lock a user out from another address. The per-address limit bounds how many
    password checks (a hash, ~5 ms of CPU on a PC, more on a Pi) one address can cause
    by trying many user names.

    Tries in flight count against the limits (tries sent at once, or on many
    connections, are not all checked), but only failures lock: clients of one host
    that log in at the same moment (after a node restart) do not lock themselves out.
    """

    def __init__(self, per_user: LoginLimiter | None = None, per_addr: LoginLimiter | None = None):
        self.per_user = per_user if per_user is not None else LoginLimiter(max_failures=5)
        self.per_addr = per_addr if per_addr is not None else LoginLimiter(max_failures=30)
        self._inflight: dict[Any, int] = {}

    def attempt(self, now: float, addr: str, name: Any) -> None:
        """A login from ``addr`` as ``name`` is about to be checked: raise
        :class:`AuthFailedError` if that pair or that address is locked out, or if
        its failures plus its tries in flight reach the limit; else it is in flight
        until :meth:`finished`."""
        pair = (addr, name)
        self.per_user.check(now, pair)
        self.per_addr.check(now, addr)
        for lim, key in ((self.per_user, pair), (self.per_addr, addr)):
            if lim.recent(now, key) + self._inflight.get(key, 0) >= lim.max_failures:
                raise AuthFailedError("too many failed or pending logins; try again later")
        for key in (pair, addr):
            self._inflight[key] = self._inflight.get(key, 0) + 1

    def finished(self, now: float, addr: str, name: Any, ok: bool) -> None:
        """The login of :meth:`attempt` was checked: ``ok`` forgets the pair's
        failures (the address keeps its others: a valid login of one user must not
        reset what the address tried on other names); else it counts as a failure."""
        pair = (addr, name)
        for key in (pair, addr):
            left = self._inflight.get(key, 0) - 1
            if left > 0:
                self._inflight[key] = left
            else:
                self._inflight.pop(key, None)
        if ok:
            self.per_user.succeeded(pair)
        else:
            self.per_user.failed(now, pair)
            self.per_addr.failed(now, addr)


def login_message(spec: str | Mapping[str, Any]) -> dict:
    """The body of the ``auth`` request for a login spec like ``"password name=joe
    password?=Code"`` (``key?=Prompt`` items are asked for, without echo on a
    terminal); a mapping ``{"method": ..., "name": ..., ...}`` is taken as resolved.
    Both clients (trio and the CLI's blocking one-shot client) log in with it."""
    if isinstance(spec, Mapping):
        method_name = spec["method"]
        params = {k: v for k, v in spec.items() if k != "method"}
    else:
        method_name, raw = parse_auth_spec(spec)
        params = resolve_params(raw)
    return get_method(method_name).login_message(params)
