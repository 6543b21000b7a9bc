"""DistKV: a distributed, masterless key-value store for home automation."""

__version__ = "0.1.0"
