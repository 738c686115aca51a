"""Shared CLI plumbing: error reporting, progress bars, console."""

from __future__ import annotations

import errno
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from smallmines.errors import SmallminesError

OVERWRITE_HELP = "Replace outputs that exist (without it, an existing output is an error)."

console = Console(stderr=True)
out = Console()


VERBOSITY = {"level": 0}
"""-1 quiet (warnings and errors only), 0 normal, 1 verbose (debug, every library's messages)."""
LIBRARIES = ("lightning", "lightning.pytorch", "lightning.fabric", "distributed", "dask", "pyogrio", "rasterio",
             "fiona", "matplotlib", "PIL", "numexpr", "urllib3")


def set_verbosity(level: int) -> None:
    """Set the verbosity chosen with ``smallmines -v/-q`` (before the command)."""
    VERBOSITY["level"] = max(-1, min(1, level))


LIGHTNING_COMMANDS = frozenset({"train", "evaluate", "benchmark", "demo", "monitor"})
"""Commands that import Lightning, whose import adds its own console handler at INFO (tamed here)."""


def setup_logging(verbose: bool = False, lightning: bool = False) -> None:
    """Route logging through rich, quietly by default.

    smallmines logs at INFO (DEBUG with ``-v``, WARNING with ``-q``); other libraries, Lightning's
    banners and tips and Dask's start-up lines among them, only at WARNING, and their deprecation
    warnings are hidden; ``-v`` shows everything. ``lightning=True`` imports Lightning first, for the
    commands that use it: its import adds a console handler at INFO that this then removes.
    """
    if lightning:  # import it now: importing it later would add its handler back and print INFO banners
        import lightning.pytorch  # noqa: F401
    level = max(VERBOSITY["level"], 1 if verbose else -1 if VERBOSITY["level"] < 0 else 0)
    handler = RichHandler(console=console, show_path=False)
    logging.basicConfig(level=logging.DEBUG if level > 0 else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)
    logging.getLogger("smallmines").setLevel({1: logging.DEBUG, 0: logging.INFO, -1: logging.WARNING}[level])
    for name in LIBRARIES:
        library = logging.getLogger(name)
        library.setLevel(logging.DEBUG if level > 0 else logging.WARNING)
        if name.startswith("lightning"):  # Lightning adds its own handler: print through ours only
            library.handlers = [h for h in library.handlers if not isinstance(h, logging.StreamHandler)
                                or isinstance(h, RichHandler)]
            library.propagate = True
    if level <= 0:
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", module=r"lightning\..*",
                                message=r".*(eval mode|num_workers|does not have many workers).*")


OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is exceeded: free space or write somewhere else",
    errno.EACCES: "permission denied: choose a place you can write to (or read)",
    errno.EPERM: "not permitted: choose a place you can write to (or read)",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "this is a folder, not a file: give a file path",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "the path is too long",
}


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the path, what the system said and what to do."""
    path = exc.filename if exc.filename is not None else ""
    hint = OS_HINTS.get(exc.errno or -1)
    said = exc.strerror or str(exc)
    return f"{path}: {said}" + (f" ({hint})" if hint and hint.lower() != said.lower() else "") if path else \
        f"{said}" + (f" ({hint})" if hint else "")


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn a SmallminesError or an OSError (full disk, read-only place...) into one red line and exit code 1."""
    try:
        yield
    except SmallminesError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        console.print(f"[bold red]error:[/] {escape(os_error_line(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """Progress for API functions that report ``update(done, total)``.

    A rich bar on a terminal; elsewhere (nohup, SLURM, a log file) one line at each tenth of the work,
    so logs show progress without control characters. Nothing with ``-q``.
    """
    if not console.is_terminal:
        yield _line_progress(description)
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=VERBOSITY["level"] < 0) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, all_: int) -> None:
            bar.update(task, completed=done, total=all_)

        yield update


def _line_progress(description: str) -> Callable[[int, int], None]:
    start, shown = time.monotonic(), [-1]

    def update(done: float, total: float) -> None:
        if VERBOSITY["level"] < 0 or not total:
            return
        tenth = int(10 * min(done, total) / total)
        if tenth > shown[0]:
            shown[0] = tenth
            console.print(f"{description}: {100 * done / total:.0f} % ({done:,.0f}/{total:,.0f}), "
                          f"{time.monotonic() - start:.0f} s", highlight=False, soft_wrap=True)

    return update
