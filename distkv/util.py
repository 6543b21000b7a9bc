"""Tutorial-compatible names: ``from distkv.util import P, Path, NotGiven``."""

from .core.path import P, Path
from .core.types import NotGiven
from .result import attrdict

__all__ = ["P", "Path", "NotGiven", "attrdict"]
