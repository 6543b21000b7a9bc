"""Tutorial-compatible entry point: ``from distkv.command import cmd; cmd()``."""

from .cli.main import cmd, main

__all__ = ["cmd", "main"]
