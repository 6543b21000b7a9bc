"""``distkv client ...``: talk to a running server.

The subcommands are listed in :data:`.commands.CLIENT`; each is imported only when
it runs.
"""

from __future__ import annotations

import argparse

from .commands import CLIENT
from .main import ArgParser, setup_logging


def client_parser() -> ArgParser:
    p = ArgParser(prog="distkv client", description="Talk to a DistKV server.")
    p.add_argument("-H", "--host", help="server host (connect.host)")
    p.add_argument("-p", "--port", type=int, help="server port (connect.port)")
    p.add_argument("-a", "--auth", help='login, e.g. "password name=joe password?=Code"')
    p.add_argument("sub", nargs="?", choices=list(CLIENT), help="what to work on")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (try SUB --help)")
    return p


def run_client(cfg: dict, args: list[str]) -> int:
    a = client_parser().parse_args(args)
    c = cfg["connect"]
    if a.host:
        c["host"] = a.host
    if a.port is not None:
        c["port"] = a.port
    if a.auth:
        c["auth"] = a.auth
    if a.sub is None:
        client_parser().print_help()
        return 2
    command = CLIENT[a.sub]
    if command.logs:
        setup_logging(cfg)
    return command.runner()(cfg, a.args)


# --- internal ---


def internal_parser() -> ArgParser:
    p = ArgParser(prog="distkv client internal")
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dump", help="dump the system tree (under null)")
    d.add_argument("path", nargs="?", default=":")
    sub.add_parser("state", help="this node's state")
    return p


def run_internal(cfg: dict, args: list[str]) -> int:
    a = internal_parser().parse_args(args)
    from ..core.path import P, Path
    from .oneshot import connect
    from .output import flow_lists, nest, yprint

    with connect(cfg) as client:
        if a.what == "state":
            yprint(flow_lists(dict(client.request("get_state"))))
            return 0
        path = Path(None) + P(a.path)
        items = [(path + r.path, r.value) for r in client.get_tree(path)]
        yprint(nest(items, "_"))
    return 0
