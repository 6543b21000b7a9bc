"""Persistence: the state directory (log + snapshots) and the tutorial's state files.

:mod:`.records` is the pure format (framing, records, replay); the file shells are
:mod:`.statedir` (the node's state directory: log segments and snapshots) and
:mod:`.statefiles` (dumps, log files, loading them), on primitives in :mod:`.files`.
"""

from .files import LoadReport
from .records import Damage, Replayer, StreamDecoder, encode_entry, iter_entries
from .statedir import StateDir, open_state_dir
from .statefiles import LogFile, load_file, open_log_file, write_dump

__all__ = [
    "Damage",
    "LoadReport",
    "LogFile",
    "Replayer",
    "StateDir",
    "StreamDecoder",
    "encode_entry",
    "iter_entries",
    "load_file",
    "open_log_file",
    "open_state_dir",
    "write_dump",
]
