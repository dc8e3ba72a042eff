"""How a library server runs: in the foreground, in a background thread, or on the caller's
event loop; the one life cycle of ``sseplay.Server`` and ``sseplay.RecordingProxy``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Self

import uvicorn

from sseplay.errors import CannotServe


class Running:
    """The life cycle shared by sseplay's servers. A subclass makes its uvicorn server in
    ``_prepare`` (before a socket is served) and serves it on the running loop in ``serve``;
    ``noun`` names it in errors, ``_thread_name`` its background thread."""

    noun = "server"

    def __init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def _prepare(self) -> uvicorn.Server:
        raise NotImplementedError

    def _thread_name(self) -> str:
        raise NotImplementedError

    async def serve(
        self, on_ready: Callable[[], None] | None = None, *, handle_signals: bool = False
    ) -> None:
        raise NotImplementedError

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM (and whatever else stops it): the
        command's way."""
        server = self._prepare()
        # uvicorn's own loop choice (uvloop when installed), which asyncio.run would skip.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(self.serve(on_ready, handle_signals=True))

    def start(self) -> Self:
        """Serve in a background thread; returns once it accepts connections."""
        server = self._prepare()
        ready = threading.Event()
        # Per start: a failed earlier start must not fail this one.
        failures: list[BaseException] = []

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                    runner.run(self.serve(ready.set))
            except BaseException as error:  # reported to the thread that started it
                failures.append(error)
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name=self._thread_name(), daemon=True)
        self._thread.start()
        ready.wait()
        if failures or not server.started:
            self._thread.join()
            failure = failures[0] if failures else None
            raise CannotServe(f"the {self.noun} did not start: {failure}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: what is in flight is ended, the port is closed. Idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        server = self._prepare()
        self._task = asyncio.ensure_future(self.serve())
        while not server.started and not self._task.done():
            await asyncio.sleep(0.005)
        if self._task.done():
            await self._task  # raises what stopped it
            raise CannotServe(f"the {self.noun} did not start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
