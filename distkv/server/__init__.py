"""The trio shell around the pure core: TCP sessions, commands, watch fan-out."""

from .server import Server, serve

__all__ = ["Server", "serve"]
