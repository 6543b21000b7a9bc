"""The floor of the design: a bare trio + msgpack request/response server.

``python -m bench.echo_server HOST PORT`` prints "Running." once it listens. Each
request map ``{"seq": n, ...}`` gets a reply ``{"seq": n, "tock": n, "chain": [["echo", n]]}``
(about the size of a DistKV ``set_value`` reply). Like the DistKV server it decodes every
message a read delivers, then writes all replies with one ``send_all``. No state, no
paths, no dispatch: whatever DistKV costs above this is the cost of DistKV.
"""

from __future__ import annotations

import sys

import msgpack
import trio


async def handle(stream: trio.SocketStream) -> None:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    pack = msgpack.Packer(use_bin_type=True).pack
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            unpacker.feed(data)
            out = []
            for msg in unpacker:
                seq = msg.get("seq")
                out.append(pack({"seq": seq, "tock": seq, "chain": [["echo", seq]]}))
            if out:
                await stream.send_all(b"".join(out) if len(out) > 1 else out[0])
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def main(host: str, port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    print("Running.", flush=True)
    await trio.serve_listeners(handle, listeners)


if __name__ == "__main__":
    try:
        trio.run(main, sys.argv[1], int(sys.argv[2]))
    except KeyboardInterrupt:
        pass
