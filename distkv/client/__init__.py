"""The Python client: ``async with open_client() as client: ...``."""

from .client import Client, StreamCall, open_client

__all__ = ["Client", "StreamCall", "open_client"]
