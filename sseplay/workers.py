"""``sseplay serve --workers N``: one port served by N processes, watched by one parent.

Most of a busy server's core is the kernel's ``send()``: more clients need more cores,
and a replay needs no coordination between them. The parent has loaded and checked the
files (once, so a bad file is one error, not N); it picks the broadcast epoch once, so
that every worker plays the same timeline, then forks the workers, which share the
loaded events copy-on-write.

On Linux each worker listens on the port with a socket of its own (SO_REUSEPORT): the
kernel then spreads new connections evenly by their addresses. One listening socket
shared by forked workers would hand most of them to whichever worker wakes first
(the thundering-herd imbalance reported to uvicorn and gunicorn); that is the fallback
where SO_REUSEPORT is missing.

The parent makes those sockets, one per worker, and each worker serves its own (a worker
started again gets the socket of the one it replaces, with the connections waiting on
it). Before, it binds the port once without SO_REUSEPORT: Linux lets a SO_REUSEPORT
socket join a port only when every socket there has SO_REUSEPORT and the same user, so
a socket of its own per worker would also let a second ``--workers`` server of the same
user join the port, each client getting either server's file; the probe fails with
"Address already in use" when anything listens there, as a plain server's bind does.
``--port 0`` is chosen by the probe, once for all.

The parent prints the URLs once every worker accepts connections, stops them all on
Ctrl-C or SIGTERM, and starts a new worker when one dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from sseplay.config import ServerConfig
from sseplay.errors import CannotServe, ExitCode, SseplayError
from sseplay.http.listen import bind, stream_urls
from sseplay.metrics import MULTIPROC_ENV
from sseplay.server import Server
from sseplay.stream import Stream

logger = logging.getLogger("sseplay.server")

REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
# How long stopping workers get before they are killed: uvicorn's graceful shutdown,
# and the rest of the second that Ctrl-C promises.
STOP_WAIT_SECONDS = 0.9
# A worker that dies this soon after it started is restarted after a pause that doubles
# each time (up to RESTART_PAUSE_LONGEST), so that a crash loop does not spin a core.
STEADY_SECONDS = 10.0
RESTART_PAUSE_FIRST = 0.1
RESTART_PAUSE_LONGEST = 5.0
# Linux prctl(PR_SET_PDEATHSIG): a worker is sent SIGTERM when its parent dies.
_PR_SET_PDEATHSIG = 1


def worker_count(requested: int) -> int:
    """--workers N, with 0 = one per CPU this process may run on."""
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class WorkerServer(Server):
    """One worker's server: it serves the socket the parent made for it (one of its own,
    SO_REUSEPORT; or the one all workers share where that is missing)."""

    shared_socket: socket.socket | None = None

    def _listen(self) -> socket.socket:
        if self.shared_socket is not None:
            return self.shared_socket
        return bind(self.config.host, self.config.port, reuse_port=True)


@dataclasses.dataclass
class _Worker:
    number: int
    process: BaseProcess
    messages: Connection
    started: float
    ready: bool = False


class Supervisor:
    """Forks the workers, watches them, and stops them; ``run`` returns when all stopped."""

    def __init__(
        self,
        streams: Mapping[str, Stream],
        config: ServerConfig,
        announce: Callable[[list[str], str], None],
    ) -> None:
        self.count = worker_count(config.workers or 0)
        if config.broadcast and config.epoch is None:
            # One moment for all: every worker's clients see each event at the same time.
            config = dataclasses.replace(config, epoch=time.time())
        config = dataclasses.replace(config, workers=self.count)
        self.announce = announce
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, _Worker] = {}
        # --metrics: where the workers' values are added up (``sseplay.metrics``).
        self._metrics_dir: str | None = None
        self._pauses: dict[int, float] = {}
        self._stop_signal: int | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        # One listening socket per worker (SO_REUSEPORT), or one for all of them.
        self._sockets = _listen(config.host, config.port, self.count if REUSE_PORT else 1)
        self._port_holder = self._sockets[0]
        config = dataclasses.replace(config, port=self._port_holder.getsockname()[1])
        self.config = config
        # Built (and checked) once here; each worker runs its own forked copy.
        self.server = WorkerServer(dict(streams), config=config)

    def run(self) -> None:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        self._wake_writer.setblocking(False)
        old_wakeup = signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        metrics = _metrics_directory() if self.config.metrics else contextlib.nullcontext()
        try:
            with metrics as self._metrics_dir:
                try:
                    for number in range(1, self.count + 1):
                        self._start(number)
                    self._supervise()
                finally:
                    self._stop_all()  # before their metrics directory goes
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self._sockets:
                sock.close()
            self._wake_reader.close()
            self._wake_writer.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def _start(self, number: int) -> None:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main,
            args=(self.server, number, send, self._sockets),
            name=f"sseplay worker {number}",
            daemon=False,
        )
        process.start()
        send.close()
        self._workers[number] = _Worker(number, process, receive, time.monotonic())
        logger.debug("worker %d started (pid %s)", number, process.pid)

    def _supervise(self) -> None:
        announced = False
        restarts: list[tuple[float, int]] = []  # (when, worker number): paused restarts
        while self._stop_signal is None:
            waitables: list[object] = [self._wake_reader]
            for worker in self._workers.values():
                waitables += [worker.process.sentinel, worker.messages]
            timeout = max(0.0, min(restarts)[0] - time.monotonic()) if restarts else None
            for ready in wait(waitables, timeout):  # type: ignore[arg-type]
                if ready is self._wake_reader:
                    with contextlib.suppress(OSError):
                        self._wake_reader.recv(512)
            for worker in list(self._workers.values()):
                self._read_messages(worker)
                if worker.process.is_alive():
                    continue
                del self._workers[worker.number]
                worker.messages.close()
                self._forget(worker)
                code = worker.process.exitcode
                if self._stop_signal is not None:
                    break
                if not announced:
                    raise CannotServe(
                        f"worker {worker.number} stopped before it served ({_how(code)})"
                    )
                if self.config.once and code == 0:
                    logger.info("--once: worker %d is done, stopping the others", worker.number)
                    return
                pause = self._restart_pause(worker)
                logger.warning(
                    "worker %d (pid %s) died (%s): starting another%s",
                    worker.number,
                    worker.process.pid,
                    _how(code),
                    f" in {pause:g} s" if pause else "",
                )
                restarts.append((time.monotonic() + pause, worker.number))
            now = time.monotonic()
            for due in [due for due in restarts if due[0] <= now]:
                restarts.remove(due)
                if self._stop_signal is None:
                    self._start(due[1])
            workers = self._workers.values()
            if not announced and len(workers) == self.count and all(w.ready for w in workers):
                announced = True
                urls = stream_urls(self._port_holder, self.server.routes)
                self.announce(urls, self.server.routes[0].route)
                logger.info(
                    "%d workers serve port %d (%s)",
                    self.count,
                    self._port_holder.getsockname()[1],
                    "each its own socket, SO_REUSEPORT" if REUSE_PORT else "one shared socket",
                )
        logger.info("stopping %d workers (%s)", len(self._workers), _signal_name(self._stop_signal))

    def _read_messages(self, worker: _Worker) -> None:
        with contextlib.suppress(EOFError, OSError):
            while worker.messages.poll():
                message = worker.messages.recv()
                if message[0] == "ready":
                    worker.ready = True
                elif message[0] == "failed":
                    # A worker that cannot serve (cannot listen, ...) before the URLs are
                    # out: the command fails with its one line and exit code.
                    error = SseplayError(message[1])
                    error.exit_code = ExitCode(message[2])
                    if not worker.ready:
                        self._stop_signal = self._stop_signal or 0
                        raise error
                    logger.error("worker %d: %s", worker.number, message[1])

    def _forget(self, worker: _Worker) -> None:
        """A worker is gone: its open connections no longer count (--metrics)."""
        if self._metrics_dir is not None and worker.process.pid is not None:
            from sseplay.metrics import worker_gone

            worker_gone(self._metrics_dir, worker.process.pid)

    def _restart_pause(self, worker: _Worker) -> float:
        lived = time.monotonic() - worker.started
        if lived >= STEADY_SECONDS:
            self._pauses.pop(worker.number, None)
            return 0.0
        pause = self._pauses.get(worker.number, 0.0)
        pause = min(RESTART_PAUSE_LONGEST, pause * 2 if pause else RESTART_PAUSE_FIRST)
        self._pauses[worker.number] = pause
        return pause

    def _stop_all(self) -> None:
        """SIGTERM to every worker; whatever is still there after STOP_WAIT_SECONDS is killed."""
        workers = [w for w in self._workers.values() if w.process.is_alive()]
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.process.is_alive():
                logger.warning("worker %d did not stop in time: killed", worker.number)
                worker.process.kill()
                worker.process.join(1)
        for worker in self._workers.values():
            worker.messages.close()
        self._workers.clear()


@contextlib.contextmanager
def _metrics_directory() -> Iterator[str]:
    """A directory for the workers' metrics (prometheus-client's multiprocess mode), in
    their environment while they run; removed with what they wrote once they stopped."""
    previous = os.environ.get(MULTIPROC_ENV)
    with tempfile.TemporaryDirectory(prefix="sseplay-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        try:
            yield directory
        finally:
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous


def _how(exit_code: int | None) -> str:
    if exit_code is None:
        return "still running"
    if exit_code < 0:
        return f"killed by {_signal_name(-exit_code)}"
    return f"exit code {exit_code}"


def _signal_name(number: int | None) -> str:
    try:
        return signal.Signals(number or 0).name
    except ValueError:
        return f"signal {number}"


class _WorkerTag(logging.Filter):
    """Prefix a worker's log lines with its number and pid: they share one stderr."""

    def __init__(self, number: int, prefix: bool = True) -> None:
        super().__init__()
        self.number = number
        self.tag = f"[worker {number} pid {os.getpid()}] " if prefix else ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.number
        if self.tag:
            record.msg = self.tag + str(record.msg)
        return True


def _listen(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets listening on the port: with SO_REUSEPORT when more than one,
    after a probe without it that refuses a port another process listens on."""
    if count == 1 and not REUSE_PORT:
        return [bind(host, port)]
    # SO_REUSEADDR and no SO_REUSEPORT: EADDRINUSE if any socket listens on the port,
    # whoever made it, but not for the TIME_WAIT connections of a server just stopped.
    probe = bind(host, port, listen=False)
    port = probe.getsockname()[1]
    probe.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(bind(host, port, reuse_port=True))
    except CannotServe:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _worker_main(
    server: WorkerServer, number: int, messages: Connection, sockets: list[socket.socket]
) -> None:
    """A forked worker: serve until stopped. Its exit code tells the parent how it ended."""
    # Its own socket (the only one where SO_REUSEPORT is missing); the others' copies,
    # inherited by the fork, are closed so that only their workers hold them.
    own = sockets[(number - 1) % len(sockets)]
    for sock in sockets:
        if sock is not own:
            sock.close()
    server.shared_socket = own
    # uvicorn handles SIGINT and SIGTERM while it serves, and re-raises the one that
    # stopped it when it is done: these no-op handlers make that a clean exit 0, as in
    # the single-process command (the parent kills a worker that has not started yet).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)
    signal.set_wakeup_fd(-1)
    _die_with_parent()
    for handler in logging.getLogger().handlers:
        # A JSON line (--log-format json) says it in a field of its own.
        handler.addFilter(_WorkerTag(number, not getattr(handler.formatter, "structured", False)))

    def ready() -> None:
        messages.send(("ready", os.getpid()))

    try:
        server.run(ready)
    except SseplayError as error:
        with contextlib.suppress(OSError):
            messages.send(("failed", str(error), int(error.exit_code)))
        os._exit(int(error.exit_code))
    finally:
        messages.close()


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass


def _die_with_parent() -> None:
    """On Linux, ask for SIGTERM when the parent dies, so that no worker outlives it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def serve_with_workers(
    streams: Mapping[str, Stream],
    config: ServerConfig,
    announce: Callable[[list[str], str], None],
) -> None:
    """Serve ``streams`` from ``config.workers`` processes until Ctrl-C, SIGTERM or --once."""
    Supervisor(streams, config, announce).run()
