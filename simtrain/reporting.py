"""One place for progress and log output.

Library code never prints: it takes a :class:`Reporter` and calls ``progress``/``log``.
The CLI passes a :class:`RichReporter`; Python users get the silent default unless they ask.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterator

logger = logging.getLogger("simtrain")


class Reporter:
    """Silent reporter: progress is ignored, logs go to the ``simtrain`` logger."""

    @contextmanager
    def progress(self, total: int, desc: str) -> Iterator[Callable[[int], None]]:
        yield lambda n=1: None

    def log(self, message: str) -> None:
        logger.info(message)


class RichReporter(Reporter):
    """Progress bars and messages on the terminal (stderr), via rich."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextmanager
    def progress(self, total: int, desc: str) -> Iterator[Callable[[int], None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.console, transient=False) as bar:
            task = bar.add_task(desc, total=total)
            yield lambda n=1: bar.advance(task, n)

    def log(self, message: str) -> None:
        # Plain text: messages carry labels, paths and model output, and rich would read
        # "[/tmp/run] ..." as a closing markup tag and raise.
        self.console.print(message, markup=False, highlight=False)
