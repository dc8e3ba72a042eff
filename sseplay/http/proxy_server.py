"""``RecordingProxy``: the recording proxy of ``sseplay record`` as a library object, run
the way ``sseplay.Server`` runs (``with`` in a background thread, ``async with`` on the
running loop, ``run()`` in the foreground until stopped)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import uvicorn

from sseplay.errors import CannotServe
from sseplay.http.listen import bind
from sseplay.http.proxy import GRACEFUL_SHUTDOWN_SECONDS, ProxyApp
from sseplay.http.running import Running

logger = logging.getLogger("sseplay.record")


class ProxyServer(uvicorn.Server):
    """uvicorn's server, ending the exchanges in flight first when it stops (uvicorn
    alone would wait out its graceful timeout for them, then cancel them mid-write);
    a library proxy leaves the process's signals alone."""

    def __init__(self, config: uvicorn.Config, app: ProxyApp) -> None:
        super().__init__(config)
        self.proxy = app
        self.handle_signals = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.proxy.close_all()
        await super().shutdown(sockets)


class RecordingProxy(Running):
    """Forwards every request to ``upstream`` and records each exchange into ``out``
    (created if missing). ``redact``: more header or query names whose values never reach
    the disk. ``port=0`` picks a free port; ``url`` is the base URL to point a client at.

    Record a real API once, then replay it with no network (``sseplay record`` and
    ``sseplay serve DIR`` in a program)::

        import openai
        from sseplay import RecordingProxy, Recordings, Server

        with RecordingProxy("https://api.openai.com", "rec/") as proxy:
            client = openai.OpenAI(base_url=proxy.url + "/v1")
            for chunk in client.chat.completions.create(model=..., messages=..., stream=True):
                ...
        with Server(Recordings("rec/")) as server:  # the same answer, byte for byte
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    """

    noun = "proxy"

    def __init__(
        self,
        upstream: str,
        out: str | Path,
        *,
        redact: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.out = Path(out)
        self.app = ProxyApp(upstream, self.out, tuple(redact))
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._server: ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The base URL the proxy listens on (``http://127.0.0.1:PORT``)."""
        if self._sock is None:
            raise RuntimeError("the proxy is not running: start it first")
        host, port = self._sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def __repr__(self) -> str:
        where = self.url if self._sock is not None else "not running"
        return f"<RecordingProxy {where} -> {self.app.shown}>"

    def _prepare(self) -> ProxyServer:
        if self._server is not None:
            raise RuntimeError("the proxy is already running")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CannotServe(f"--out {self.out}: cannot create it: {error.strerror}") from None
        self._sock = bind(self.host, self.port)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            # The upstream's Server and Date go back as received, not uvicorn's.
            server_header=False,
            date_header=False,
            # Typed int, but uvicorn only passes it to a timeout, where half a second works.
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,  # type: ignore[arg-type]
        )
        self._server = ProxyServer(config, self.app)
        return self._server

    async def serve(
        self, on_ready: Callable[[], None] | None = None, *, handle_signals: bool = False
    ) -> None:
        """Serve on the running loop until ``stop()`` (or Ctrl-C and SIGTERM, when
        ``handle_signals``: the ``sseplay record`` command's way)."""
        server = self._server or self._prepare()
        server.handle_signals = handle_signals
        assert self._sock is not None
        try:
            task = asyncio.ensure_future(server.serve(sockets=[self._sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.005)
            if server.started:
                logger.info("recording %s into %s at %s", self.app.shown, self.out, self.url)
                if on_ready is not None:
                    on_ready()
            await task
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._server = None

    def _thread_name(self) -> str:
        return f"sseplay record {self.url}"
