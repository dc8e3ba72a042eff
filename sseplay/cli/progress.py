"""A progress bar on stderr for long start-up work (spooling, decompressing, checking).

Nothing is shown for work that ends within ``delay`` seconds, nor when stderr is not a
terminal: a script's stderr then stays one line per error. The bar is rich's, drawn
only when the work reports progress (about once per MiB read), so it needs no thread;
it is removed from the screen when the work is done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from sseplay.logs import json_lines

if TYPE_CHECKING:  # rich costs ~50 ms to import: only when a bar may be drawn
    from rich.console import Console
    from rich.progress import Progress, TaskID

# (bytes done, bytes in all or None when unknown, as for standard input)
Report = Callable[[int, int | None], None]

# Work that ends sooner than this shows nothing.
DEFAULT_DELAY = 1.0
# Redraw no more often than this, in seconds.
REFRESH_EVERY = 0.1


class StartupProgress:
    """Hands out ``reporter(description)`` callbacks; shows a bar once ``delay`` seconds
    have passed since ``__enter__`` and work is still reporting. Use as a context manager."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        delay: float = DEFAULT_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._delay = delay
        self._clock = clock
        self._began = clock()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._last_refresh = -REFRESH_EVERY

    @property
    def enabled(self) -> bool:
        if json_lines():  # --log-format json: stderr holds JSON lines only
            return False
        if self._console is not None:
            return self._console.is_terminal
        return sys.stderr.isatty()

    def reporter(self, description: str) -> Report | None:
        """A callback for one piece of work, or None when no bar is ever shown (stderr is
        not a terminal), so that the work then does not even count its bytes."""
        if not self.enabled:
            return None

        def report(done: int, total: int | None) -> None:
            self._report(description, done, total)

        return report

    def _report(self, description: str, done: int, total: int | None) -> None:
        now = self._clock()
        if self._progress is None:
            if now - self._began < self._delay:
                return
            self._progress = self._start()
        progress = self._progress
        task = self._tasks.get(description)
        if task is None:
            for other in self._tasks.values():  # the work before this one is done
                progress.update(other, visible=False)
            task = self._tasks[description] = progress.add_task(description, total=total)
        progress.update(task, completed=done, total=total)
        if now - self._last_refresh >= REFRESH_EVERY:
            self._last_refresh = now
            progress.refresh()

    def _start(self) -> Progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console or Console(stderr=True),
            auto_refresh=False,  # redrawn from _report: the work runs on this thread
            transient=True,
            get_time=self._clock,
            redirect_stdout=False,  # the URLs go to stdout after the check, untouched
            redirect_stderr=False,
        )
        progress.start()
        return progress

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> StartupProgress:
        self._began = self._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
