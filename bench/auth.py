"""Auth benchmarks: password login time, and what an ACL costs a restricted user."""

from __future__ import annotations

import statistics
import time

from . import Result, at_most, benchmark
from .measure import rounds, run_seq
from .procs import HOST

NKEYS = 1000


async def _setup(c) -> None:
    """Users root (unrestricted) and joe (ACL with a few rules), password method."""
    from distkv.auth import get_method
    from distkv.core.acl import acl_path, user_path
    from distkv.util import P, Path

    m = get_method("password")
    for rule, mode in [("acl.#", "rwcdx"), ("other.+.x", "r"), ("x.secret", ""), ("+", "x")]:
        await c.set(acl_path("bench", P(rule)), mode)
    for u, extra in [("root", {}), ("joe", {"acl": "bench"})]:
        name, rec = m.make_user({"name": u, "password": "benchpw"})
        await c.set(user_path("password", name), {**rec, **extra})
    await c.set(Path(None, "auth"), {"current": "password"})


def _client(p, user):
    from distkv.client import open_client

    auth = f"password name={user} password=benchpw"
    return open_client(connect={"host": HOST, "port": p.port, "auth": auth})


@benchmark(
    "auth",
    group="auth",
    rows=[
        ("password login (connect + auth)", "ms", at_most(50)),
        ("set, sequential, unrestricted user", "ops/s", None),
        ("set, sequential, ACL-restricted user", "ops/s", None),
        ("get, sequential, unrestricted user", "ops/s", None),
        ("get, sequential, ACL-restricted user", "ops/s", None),
    ],
)
async def bench_auth(ctx) -> list[Result]:
    from distkv.util import P

    paths = [P(f"acl.k{i}") for i in range(NKEYS)]
    out: list[Result] = []
    async with ctx.server("bench-auth") as p:
        async with ctx.client(p) as c:
            await _setup(c)
        times = []
        for _ in range(ctx.scale(20, 5)):
            t0 = time.perf_counter()
            async with _client(p, "joe") as c:
                times.append((time.perf_counter() - t0) * 1000)
        out.append(
            Result(
                "password login (connect + auth)",
                statistics.median(times),
                "ms",
                at_most(50),
                note=f"median of {len(times)} (pbkdf2-sha256 check in a worker thread)",
            )
        )
        rates: dict[tuple[str, str], float] = {}
        for op_name in ("set", "get"):
            for user in ("root", "joe"):
                async with _client(p, user) as c:
                    if op_name == "set":

                        async def op(i, c=c):
                            await c.set(paths[i % NKEYS], i)
                    else:

                        async def op(i, c=c):
                            await c.get(paths[i % NKEYS])

                    await run_seq(op, 1000, 0.2)
                    rate, note = await rounds(
                        lambda r, op=op: run_seq(op, 100_000, ctx.scale(1.0, 0.3)), ctx.scale(3, 1)
                    )
                rates[op_name, user] = rate
                label = "unrestricted user" if user == "root" else "ACL-restricted user"
                if user == "joe":
                    base = rates[op_name, "root"]
                    note += f"; {rate / base:.0%} of unrestricted (target ≥ 85%)"
                out.append(
                    Result(f"{op_name}, sequential, {label}", rate, "ops/s", None, note=note)
                )
    return out
