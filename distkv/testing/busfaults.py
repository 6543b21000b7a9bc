"""Fault injection for buses: what tests (and simulated clusters) do to a bus that no
production code may do.

:class:`FaultInjection` is a mixin for a :class:`~distkv.bus.Bus` subclass. The
in-process :class:`~distkv.bus.memory.MemoryBus` always has it (it exists for tests);
for MQTT, tests open :class:`~distkv.testing.faultymqtt.FaultyMqttBus` with
:func:`~distkv.testing.faultymqtt.open_faulty_mqtt_bus`. The faults are the
transport's own ``_transport_cut`` / ``_transport_crash`` hooks, so each transport
fails the way its real counterpart does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distkv.bus.bus import Bus

__all__ = ["FaultInjection"]


class FaultInjection:
    """Mixin: cut a bus's connection, crash it, redo its subscriptions."""

    def drop_connection(self: Bus) -> None:  # type: ignore[misc]
        """Cut the connection abruptly (the broker publishes the will); the bus then
        reconnects as it would after a network failure."""
        self._check_open()
        self._transport_cut()

    async def crash(self: Bus) -> None:  # type: ignore[misc]
        """Die without saying goodbye (the broker publishes the will) and stop for
        good. The bus is closed afterwards."""
        await self._transport_crash()

    async def resubscribe_all(self: Bus) -> None:  # type: ignore[misc]
        """Make every subscription again, as after a reconnect; returns (without
        looping) if the link breaks meanwhile: the next connection redoes them."""
        self._epoch += 1
        await self._resubscribe_all()
