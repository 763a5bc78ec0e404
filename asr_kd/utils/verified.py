"""Checksums verified once: `verified.json` beside a directory's files records a checksum that was
checked against them, with each file's size and mtime, so later loads of unchanged files skip the hash.

A file rewritten in place changes its mtime (or size) and is hashed again; a change that keeps both
(a bit flip on disk under a restored mtime) is caught only by a full verification.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

VERIFIED = "verified.json"


def _record(directory: Path, names: Sequence[str], checksum: str) -> dict[str, Any]:
    stats = {name: (directory / name).stat() for name in names}
    return {"checksum": checksum, "files": {name: [st.st_size, st.st_mtime_ns] for name, st in stats.items()}}


def was_verified(directory: Path, names: Sequence[str], checksum: str) -> bool:
    """Whether verified.json says `checksum` was verified against the files `names` as they are now."""
    try:
        return read_json(directory / VERIFIED) == _record(directory, names, checksum)
    except (OSError, InputError):  # no record, or an unreadable one: not verified
        return False


def record_verified(directory: Path, names: Sequence[str], checksum: str) -> None:
    """Record that `checksum` matches the files `names` now (skipped, with a note, in a read-only directory)."""
    try:
        atomic_write_json(directory / VERIFIED, _record(directory, names, checksum))
    except OSError as err:
        log.info("%s: cannot record its verified checksum (%s); it is verified again at the next load", directory, err)
