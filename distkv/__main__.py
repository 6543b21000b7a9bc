"""``python -m distkv`` is the ``distkv`` command."""

from .cli.main import cmd

cmd()
