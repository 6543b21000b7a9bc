"""Bridges between DistKV and the devices of a house, through the public client API only.

``gateways.mqtt`` mirrors a subtree to MQTT topics and back (devices that speak
strings get typed values through the gateway user's codec); ``gateways.owfs`` puts
1-wire sensors read from an ``owserver`` into the tree (and PIO outputs back);
``hw.gpiogw`` does the same for GPIO lines. Run one with
``distkv-gateway [-c FILE] [-C key=value] gpio|mqtt|owfs`` (see docs/hardware.md).
"""
