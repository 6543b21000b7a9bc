"""The command table: one function per client action.

Plain functions handle a request synchronously and return the reply map (no awaits,
so the batch loop in :mod:`.session` stays fast); ``async`` ones wait (a login) and
then reply; streams send their items through the session. :data:`COMMANDS` at the end
of this module is the whole table, written out: a new action is a function here and a
line there. ``docs/protocol.md`` describes each action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..core.path import Path, sort_key
from ..core.types import NotGiven
from ..exceptions import ClientChainError, ClientError, NotReadyError, PermissionDenied
from .watch import Watcher, encode_item, entry_message

if TYPE_CHECKING:
    from .server import Server
    from .session import Session

#: Entries per message of a ``sync_dump`` stream.
DUMP_CHUNK = 256


def get_path(server: Server, msg: dict, key: str = "path") -> Path:
    p = msg.get(key, ())
    if type(p) is not Path:
        if not isinstance(p, list | tuple):
            raise ClientError(f"{key} must be a path, not {type(p).__name__}")
        p = Path.build(p)
    if len(p) > server.limits.path_depth:
        server.limits.check_path(p)
    return p


def _int(msg: dict, key: str, default: int) -> int:
    v = msg.get(key, default)
    if type(v) is not int:
        if v is None:
            return default
        raise ClientError(f"{key} must be an integer")
    return v


def check_chain(e, chain: Any, path: Path) -> None:
    """Optimistic concurrency: the caller's chain must name the current write.

    ``None`` (or an empty chain) means "the entry must not have a value".
    """
    has_value = e is not None and e.value is not NotGiven
    if not chain:
        if has_value:
            raise ClientChainError(f"{path} exists already (chain=None asks for a new entry)")
        return
    if not has_value:
        raise ClientChainError(f"{path} has no value, but a chain was given")
    try:
        node, tick = chain[0]
    except (TypeError, ValueError):
        raise ClientError("chain must be a list of [node, tick] links") from None
    if e.node != node or e.tick != tick:
        raise ClientChainError(f"{path} was changed by somebody else (stale chain)")


def cmd_ping(server: Server, session: Session, msg: dict) -> dict:
    return {"node": server.name, "tock": server.replica.tock}


def cmd_get_value(server: Server, session: Session, msg: dict) -> dict:
    path = get_path(server, msg)
    server.check_acl(session, path, "r")
    e = server.replica.tree.lookup(path)
    res: dict[str, Any] = {}
    if e is None:
        return res
    if e.value is not NotGiven:
        conv = session.conv
        res["value"] = e.value if conv is None else conv.encode(path, e.value)
    res["tock"] = e.tock
    nchain = msg.get("nchain", 0)
    if nchain:
        res["chain"] = e.chain_list(nchain)
    return res


def cmd_set_value(server: Server, session: Session, msg: dict) -> dict:
    path = get_path(server, msg)
    if "value" not in msg:
        raise ClientError("set_value needs a value (use delete_value to delete)")
    value = msg["value"]
    tree = server.replica.tree
    e = tree.lookup(path)
    if session.acl is not None:  # before the chain check, which tells what exists
        server.check_acl(session, path, "w" if e is not None and e.value is not NotGiven else "c")
    if "chain" in msg:
        check_chain(e, msg["chain"], path)
    server.limits.check_value(value)
    if session.conv is not None:
        value = session.conv.decode(path, value)
    server.check_value(path, value)
    e = server.write(path, value)
    return {"tock": e.tock, "chain": [[e.node, e.tick]]}


def cmd_delete_value(server: Server, session: Session, msg: dict) -> dict:
    path = get_path(server, msg)
    server.check_acl(session, path, "d")  # before the chain check, which tells what exists
    e = server.replica.tree.lookup(path)
    if "chain" in msg:
        check_chain(e, msg["chain"], path)
    if e is None or e.value is NotGiven:
        return {"changed": False}
    e = server.write(path, NotGiven)
    return {"changed": True, "tock": e.tock}


async def cmd_delete_tree(server: Server, session: Session, msg: dict) -> dict:
    """Delete every value below ``path`` (inclusive); replies with the count.

    A large subtree must not freeze the node (100,000 entries took seconds in one
    step): the walk yields every :data:`WALK_SLICE` entries like the other tree walks,
    and the deletes go out in slices of :data:`WALK_SLICE`, each handed to
    persistence and replication (``after_batch``) before other clients get their
    turn. The ACL is checked for every entry before anything is deleted, so a
    refused request deletes nothing. An entry written again while the deletes are
    under way is deleted too (it is below ``path``); one written after it was
    deleted stays.
    """
    path = get_path(server, msg)
    tree = server.replica.tree
    paths = []
    walked = 0
    for rel, _ in tree.walk(path, sort=False, only="values", pause=WALK_SLICE):
        walked += 1
        if rel is not None:
            paths.append(path + rel)
        if walked % WALK_SLICE == 0 or rel is None:  # rel None: 500 entries skipped
            await trio.lowlevel.checkpoint()
    acl = session.acl
    if acl is not None:
        for i, p in enumerate(paths):
            if not acl.allowed(p, "d"):
                # name only what was asked for: p may be a path this user cannot see
                raise PermissionDenied(
                    f"{session.user} may not delete everything below {path}",
                    path=path,
                    mode="d",
                )
            if i % WALK_SLICE == WALK_SLICE - 1:
                await trio.lowlevel.checkpoint()
    count = 0
    for i, p in enumerate(paths):
        e = tree.lookup(p)
        if e is not None and e.value is not NotGiven:
            server.write(p, NotGiven)
            count += 1
        if i % WALK_SLICE == WALK_SLICE - 1:
            server.after_batch()
            await trio.lowlevel.checkpoint()
    return {"count": count}


def cmd_list(server: Server, session: Session, msg: dict) -> dict:
    path = get_path(server, msg)
    server.check_acl(session, path, "r")
    e = server.replica.tree.lookup(path)
    out = []
    if e is not None and e.children:
        acl = session.acl
        if acl is None:
            for k in sorted(e.children, key=sort_key):
                if _has_data(e.children[k]):
                    out.append(k)
        else:
            # only names this user could read something at or below: a hidden
            # child's name (a user name, say) is itself what an ACL hides
            cur = acl.cursor()
            for el in path:
                cur = cur.child(el)
            for k in sorted(e.children, key=sort_key):
                if _has_readable(e.children[k], cur.child(k)):
                    out.append(k)
    # as a path (msgpack ext 2): names that are tuples come back as tuples, not lists
    return {"children": Path._from_tuple(tuple(out))}


def _has_data(e) -> bool:
    """Whether ``e`` or anything below it has a value (tombstones do not count)."""
    stack = [e]
    while stack:
        e = stack.pop()
        if e.value is not NotGiven:
            return True
        if e.children:
            stack.extend(e.children.values())
    return False


def _has_readable(e, cur) -> bool:
    """Whether ``e`` or anything below it has a value that the ACL cursor ``cur``
    (at ``e``) lets its user read; subtrees the user may not enter are skipped."""
    stack = [(e, cur)]
    while stack:
        e, cur = stack.pop()
        if e.value is not NotGiven and cur.allowed("r"):
            return True
        if e.children and cur.can_enter:
            stack.extend((c, cur.child(k)) for k, c in e.children.items())
    return False


def _stream_args(server: Server, msg: dict) -> tuple[Path, int, int, int, int]:
    return (
        get_path(server, msg),
        msg["seq"],
        _int(msg, "min_depth", 0),
        _int(msg, "max_depth", -1),
        _int(msg, "nchain", 0),
    )


#: Entries a stream walks (sent or skipped) between two checkpoints: a walk over a
#: large subtree, or one where the reader may see little, must not hold up other clients.
WALK_SLICE = 500


def _check_subtree_readable(session: Session, path: Path) -> None:
    """Reading what you may not read is an error, not an empty answer: if neither
    ``path`` nor anything below it can be readable for this user (no ``r`` there, and
    no ``x`` to go further), raise the ACL's explanation. Where something below may be
    readable, the walk just skips what is not (that reveals nothing: the same answer
    whether hidden entries exist or not)."""
    acl = session.acl
    if acl is None:
        return
    cur = acl.cursor()
    for el in path:
        cur = cur.child(el)  # below an entry without x everything is dead
    if not (cur.allowed("r") or cur.can_enter):
        acl.check(path, "r")


async def _send_entries(server: Server, session: Session, msg: dict) -> None:
    """Stream every entry with a value below the request's ``path`` that the session
    may read (``get_tree``, a watch's initial dump).

    Paced by the client's credit (a large tree neither blocks the server nor piles up
    in memory for a slow reader), and yielding to other tasks every
    :data:`WALK_SLICE` entries walked, whether sent or skipped. Values are read when
    they are sent, so a change during the walk is never followed by older data.
    """
    path, seq, min_depth, max_depth, nchain = _stream_args(server, msg)
    _check_subtree_readable(session, path)
    conv = session.conv
    walked = 0
    tree = server.replica.tree
    for rel, e in tree.walk(path, min_depth, max_depth, only="values", pause=WALK_SLICE):
        walked += 1
        if walked % WALK_SLICE == 0 or rel is None:  # rel None: 500 entries skipped
            await trio.lowlevel.checkpoint()
            if rel is None:
                continue
        if e.value is NotGiven:  # deleted while we paused
            continue
        acl = session.acl  # re-read: rights may change while we pause
        if acl is not None and not acl.allowed(path + rel, "r"):
            continue
        m = entry_message(seq, rel, e, nchain)
        if conv is not None:
            encode_item(conv, path + rel, m)
        await session.stream_send(seq, m)


async def cmd_get_tree(server: Server, session: Session, msg: dict) -> None:
    """Stream every entry with a value below ``path`` (see :func:`_send_entries`)."""
    await _send_entries(server, session, msg)


async def cmd_watch(server: Server, session: Session, msg: dict) -> None:
    """Send changes below ``path`` until stopped; with ``fetch`` first the current state.

    The watcher is registered before the dump starts, and the dump is paced by credit
    like ``get_tree``: a change during the dump is sent as it happens, and the dump
    reads each value when it sends it, so the client may see a value twice but never an
    older one after a newer one; ``uptodate`` follows the dump.
    """
    path, seq, min_depth, max_depth, nchain = _stream_args(server, msg)
    server.check_acl(session, path, "r")
    limit = server.limits.watches
    if len(session.watchers) >= limit:
        raise ClientError(
            f"this connection has {len(session.watchers)} watches, "
            f"server.limits.watches is {limit}"
        )
    w = Watcher(session, seq, path, min_depth, max_depth, nchain)
    session.watchers[seq] = w
    server.watches.add(w)
    if msg.get("fetch"):
        await _send_entries(server, session, msg)
        await session.stream_send(seq, {"seq": seq, "state": "uptodate"})
    session.wakeup.set()
    await trio.sleep_forever()


def cmd_stop(server: Server, session: Session, msg: dict) -> dict:
    task = msg.get("task")
    if type(task) is not int:
        raise ClientError("stop needs the seq of a running stream as 'task'")
    return {"stopped": session.stop_stream(task)}


#: The (virtual) path whose read right lets an ACL-restricted user see the node's
#: status: ``get_state`` (peers and their addresses, ticks, conflicts) and ``/metrics``.
NODE_STATUS_PATH = Path(".distkv", "metrics")


def cmd_get_state(server: Server, session: Session, msg: dict) -> dict:
    server.check_acl(session, NODE_STATUS_PATH, "r")  # deny by default, as /metrics
    return server.state()


async def cmd_auth(server: Server, session: Session, msg: dict) -> dict:
    return await server.login(session, msg)


async def cmd_log(server: Server, session: Session, msg: dict) -> dict:
    """``client log dest``: write the state (unless incremental), then every change."""
    if msg.get("oneshot"):
        return {"file": await server.save(session, msg.get("file"))}
    fn = await server.log_dest(session, msg.get("file"), bool(msg.get("incremental")))
    return {"file": fn}


async def cmd_log_stop(server: Server, session: Session, msg: dict) -> dict:
    if session.acl is not None:  # as for starting one: only unrestricted users
        raise PermissionDenied(f"{session.user} may not stop the server's log")
    return {"stopped": await server.log_stop()}


async def cmd_sync_dump(server: Server, session: Session, msg: dict) -> None:
    """Stream this node's :meth:`Replica.dump` to a joining node.

    Items are ``{"items": [dump message, ...]}`` chunks. Needs unrestricted access
    (the dump holds the whole tree, system entries included) and a ready node.
    """
    if session.acl is not None:
        raise PermissionDenied(f"{session.user} may not read the full replication dump")
    r = server.replica
    if not r.ready:
        raise NotReadyError(f"node {server.name} is not ready; sync from another node")
    seq = msg["seq"]
    chunk: list[dict] = []
    for m in r.dump():
        chunk.append(m)
        if len(chunk) >= DUMP_CHUNK:
            await session.stream_send(seq, {"seq": seq, "items": chunk})
            chunk = []
            await trio.lowlevel.checkpoint()
    if chunk:
        await session.stream_send(seq, {"seq": seq, "items": chunk})


#: action -> (function, kind). kind: "sync" (returns the reply at once), "async"
#: (awaits, then replies once) or "stream" (start, items, end).
COMMANDS: dict[str, tuple[Any, str]] = {
    "ping": (cmd_ping, "sync"),
    "get_value": (cmd_get_value, "sync"),
    "set_value": (cmd_set_value, "sync"),
    "delete_value": (cmd_delete_value, "sync"),
    "delete_tree": (cmd_delete_tree, "async"),
    "list": (cmd_list, "sync"),
    "get_tree": (cmd_get_tree, "stream"),
    "watch": (cmd_watch, "stream"),
    "stop": (cmd_stop, "sync"),
    "get_state": (cmd_get_state, "sync"),
    "auth": (cmd_auth, "async"),
    "log": (cmd_log, "async"),
    "log_stop": (cmd_log_stop, "async"),
    "sync_dump": (cmd_sync_dump, "stream"),
}
