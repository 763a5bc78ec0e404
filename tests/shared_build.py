"""Test data built once per test session, however many pytest-xdist workers run it (`make test` runs two).

The first worker to need a directory builds it while holding its file lock; the others wait on the lock
and reuse it. A build that raised is recorded, so the other workers fail at once with its error instead
of building it again. Without xdist the directory lies in the session's own base temp dir.
"""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock


def shared_path(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Where the session's workers share `name`: pytest-N/name above the workers' own pytest-N/popen-gwK/."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


def build_once(path: Path, build: Callable[[Path], None]) -> Path:
    """`path` as `build(path)` made it, made by the first caller of the session; the others wait, then reuse it."""
    built, failed = (path.with_name(f"{path.name}.{what}") for what in ("built", "failed"))
    with FileLock(path.with_name(f"{path.name}.lock")):
        if failed.exists():
            pytest.fail(f"building {path} failed in another worker of this session:\n{failed.read_text()}")
        if not built.exists():
            if path.exists():
                shutil.rmtree(path)
            try:
                build(path)
            except BaseException:
                failed.write_text(traceback.format_exc())
                raise
            built.touch()
    return path
