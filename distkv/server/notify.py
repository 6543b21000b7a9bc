"""sd_notify without a dependency: tell systemd (Type=notify) when the node is ready.

The protocol is one datagram to the AF_UNIX socket named by ``NOTIFY_SOCKET``
(``@name`` = abstract namespace). Doing it by hand avoids needing systemd-python and
libsystemd on the Pi; with no ``NOTIFY_SOCKET`` it does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def sd_notify(**fields: str | int) -> bool:
    """Send ``KEY=value`` lines (e.g. ``READY=1``, ``STATUS=...``); True if sent."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(msg)
    except OSError as exc:
        logger.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True
