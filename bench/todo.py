"""Placeholders for benchmarks whose features do not exist yet.

Each shows its rows as "not available yet" in the table. To implement one, replace
its ``todo(...)`` call with a ``@benchmark`` function of the same name (and rows),
e.g. in a new module listed in ``bench.MODULES``. ``ctx.pool.start_server`` starts
more nodes; extend it with the options a cluster needs (bus, state dir).
"""

from . import todo  # noqa: F401 - kept for future placeholders

# (none left: replication is in bench/cluster.py)
