"""Placeholders for benchmarks whose features do not exist yet.

Each shows its rows as "not available yet" in the table. To implement one, replace
its ``todo(...)`` call with a ``@benchmark`` function of the same name (and rows),
e.g. in a new module listed in ``bench.MODULES``. ``ctx.pool.start_server`` starts
more nodes; extend it with the options a cluster needs (bus, state dir).
"""

from . import todo

todo(
    "repl_watch_latency",
    group="replication",
    reason="needs replication between nodes",
    rows=[
        ("watch latency p50, across nodes", "ms", None),
        ("watch latency p99, across nodes", "ms", None),
    ],
)

todo(
    "repl_sync",
    group="replication",
    reason="needs replication between nodes",
    rows=[("2nd node start to serving 20k entries", "s", None)],
)
