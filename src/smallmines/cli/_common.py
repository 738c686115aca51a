"""Shared CLI plumbing: error reporting, progress bars, console."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from smallmines.errors import SmallminesError

console = Console(stderr=True)
out = Console()


def setup_logging(verbose: bool = False) -> None:
    """Route logging through rich: smallmines at INFO (DEBUG with ``--verbose``), other libraries at WARNING."""
    handler = RichHandler(console=console, show_path=False)
    # Lightning prints its own INFO lines through its own handler; do not print them twice.
    handler.addFilter(lambda record: verbose or record.levelno >= logging.WARNING
                      or not record.name.startswith("lightning"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)
    logging.getLogger("smallmines").setLevel(logging.DEBUG if verbose else logging.INFO)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn a SmallminesError into a red one-line message and exit code 1."""
    try:
        yield
    except SmallminesError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields ``update(done, total)`` for API functions that report progress."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, all_: int) -> None:
            bar.update(task, completed=done, total=all_)

        yield update
