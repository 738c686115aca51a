"""Output folders: exclusive use by one run at a time, and the run id that ties their files together.

:func:`folder_lock` takes an advisory lock (``fcntl.flock``) on ``FOLDER/.smallmines.lock`` for the
duration of a ``with`` block. A second run into the same folder fails at once with a message naming
the folder and the process holding it, instead of both writing and leaving files that contradict
each other. The lock dies with its process, so a killed run never leaves a stale lock behind (only a
harmless empty lock file, reused by the next run); a finished run removes the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from smallmines.errors import ConfigError

LOCK_NAME = ".smallmines.lock"
RUN_TAG = "SMALLMINES_RUN_ID"
"""GeoTIFF tag holding the id of the run that wrote a raster; the run's summary.json holds the same id,
so a folder whose files come from two runs (an interrupted rerun) is recognised and refused."""


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if needed) while the block runs.

    Args:
        folder: the output folder.
        command: what is writing, for the message a second run gets (``smallmines map``).

    Raises:
        ConfigError: another process holds the folder.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(f"{folder} is in use by {holder}; wait for it to finish or write to another "
                              "folder") from None
        if not path.exists() or os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino:
            # the holder removed the file between our open and our lock: someone else may hold a new one
            raise ConfigError(f"{folder} was just in use by another run; run again")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()})")
        handle.flush()
        try:
            yield folder
        finally:
            path.unlink(missing_ok=True)  # before unlocking, so no one locks a file about to vanish
            fcntl.flock(handle, fcntl.LOCK_UN)


def refuse_overwrite(paths: Iterable[str | Path], overwrite: bool) -> None:
    """Refuse to replace outputs that exist, unless ``overwrite`` (rio's habit).

    Args:
        paths: the outputs a command would replace (files or folders); the first that exists is named.
        overwrite: replace them (``--overwrite``).

    Raises:
        ConfigError: one of ``paths`` exists and ``overwrite`` is False.
    """
    if overwrite:
        return
    for path in paths:
        if Path(path).exists():
            raise ConfigError(f"{path} exists; give --overwrite to replace it (or choose another output)")


def free_space_check(folder: str | Path, needed: int, what: str) -> None:
    """Refuse a write of ``needed`` bytes into ``folder`` when its file system has less free space.

    Args:
        folder: where the file goes (the nearest existing parent is measured).
        needed: bytes the write needs.
        what: the file, for the message.

    Raises:
        ConfigError: not enough free space (a memory-mapped write would die with SIGBUS instead).
    """
    import shutil

    place = Path(folder).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    free = shutil.disk_usage(place).free
    if free < needed:
        raise ConfigError(f"{what} needs {needed / 2**20:,.1f} MiB but {place} has only {free / 2**20:,.1f} MiB "
                          "free; free space or write somewhere else")
