"""Auth methods: ``_test``, ``password``, ``root``; see :mod:`distkv.auth.base`."""

from . import base as _base
from .base import *  # noqa: F403 - this package re-exports exactly base's public names

__all__ = _base.__all__
