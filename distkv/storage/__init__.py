"""Persistence: the state directory (log + snapshots) and the tutorial's state files.

:mod:`.records` is the pure format (framing, records, replay); :mod:`.statedir` the
file shell the server uses.
"""

from .records import Damage, Replayer, StreamDecoder, encode_entry, iter_entries
from .statedir import (
    LoadReport,
    LogFile,
    StateDir,
    load_file,
    open_log_file,
    open_state_dir,
    write_dump,
)

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
