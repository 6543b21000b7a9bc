"""Opening a bus from configuration: a URI, a config mapping or an in-process network."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

from distkv.exceptions import ConfigError

from .bus import Bus

__all__ = ["open_bus"]


def open_bus(
    target: str | Mapping[str, Any] | Any, root: str, node: str, **kw: Any
) -> AbstractAsyncContextManager[Bus]:
    """Open a bus from a URI (``mqtt://[user:pass@]host[:port]``), a config mapping
    (``{"uri": ..., <open_mqtt_bus keyword>: ...}``) or a
    :class:`~distkv.bus.memory.MemoryNetwork`."""
    if isinstance(target, Mapping):
        cfg = dict(target)
        try:
            uri = cfg.pop("uri")
        except KeyError:
            raise ConfigError("bus config needs a 'uri'") from None
        cfg.update(kw)
        return open_bus(uri, root, node, **cfg)
    if isinstance(target, str):
        scheme = urlsplit(target).scheme
        if scheme == "mqtt":
            from distkv.bus.mqtt import open_mqtt_bus  # paho only when MQTT is used

            return open_mqtt_bus(target, root, node, **kw)
        raise ConfigError(f"unsupported bus URI {target!r} (expected mqtt://host:port)")
    open_ = getattr(target, "open_bus", None)
    if open_ is None:
        raise ConfigError(f"cannot open a bus on {target!r}")
    return open_(root, node, **kw)
