"""Where a Redis stream is: the ``redis://`` URL (``RedisTarget``), the redis-py client
made for it, and the one-line errors of a Redis that cannot be reached or is not
installed. The ``redis`` package is imported only when a client is made: ``redis_asyncio()``
says how to install it when missing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sseplay.config import ServerConfig, is_url
from sseplay.errors import CannotServe, UsageError

if TYPE_CHECKING:
    import redis.asyncio

SCHEMES = ("redis", "rediss")
DEFAULT_PORT = 6379
# Redis's default number of databases is 16, but a server may have more (``databases``).
MAX_DB = 2**31 - 1
CONNECT_TIMEOUT = 5.0
INSTALL_HINT = "pip install 'sseplay[redis]'"


def check_redis_route(config: ServerConfig) -> None:
    """What a Redis route cannot be served with (the flags act on replayed files); the CLI
    asks before it connects, so that a usage error is never hidden by Redis being down."""
    if config.faults or config.fault_header:
        raise UsageError(
            "--fault and --fault-header act on replayed files, not on redis:// streams: "
            "serve the Redis stream from a server of its own"
        )
    if config.workers is not None:
        raise UsageError("--workers does not serve redis:// streams yet: drop --workers")
    if config.once:
        raise UsageError("--once waits for the end of a replay, and a redis:// stream never ends")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A Redis stream: where the server is and which key; built by ``parse`` only."""

    host: str
    port: int
    db: int
    stream: str
    tls: bool = False
    username: str | None = None
    # Kept out of repr, logs and /healthz: ``shown`` is the URL without it.
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, flag: str = "") -> RedisTarget:
        """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?stream=KEY`` (``rediss://``: TLS);
        a UsageError that says what is wrong and how to write it otherwise."""
        where = f"{flag} {url}" if flag else url
        example = "write it like redis://127.0.0.1:6379/0?stream=events"

        def bad(problem: str) -> UsageError:
            return UsageError(f"{_hide_password(where)}: {problem}; {example}")

        if not isinstance(url, str) or not is_url(url):
            raise bad("not a URL")
        scheme = url.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise bad(f"the scheme {scheme}:// is not one sseplay reads (redis://, rediss://)")
        try:
            parts = urlsplit(url)
        except ValueError:  # an unclosed [ of an IPv6 address
            raise bad("the host is not a valid [IPv6] address") from None
        try:
            port = parts.port
        except ValueError:
            raise bad("the port must be a number from 1 to 65535") from None
        if port == 0:
            raise bad("the port must be a number from 1 to 65535")
        host = parts.hostname
        if not host:
            raise bad("it names no host")
        path = parts.path.strip("/")
        if path and (not path.isdigit() or not path.isascii() or int(path) > MAX_DB):
            raise bad(f"the database {path!r} must be a number, like /0")
        if parts.fragment:
            raise bad("a URL of a stream has no #fragment")
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:  # ?stream or ?=x: no KEY=VALUE pair
            raise bad("it names no stream key: add ?stream=KEY") from None
        if any(not key for key, _ in query):
            raise bad("a parameter has no name: add ?stream=KEY")
        streams = [value for key, value in query if key == "stream"]
        unknown = sorted({key for key, _ in query if key != "stream"})
        if unknown:
            raise bad(f"unknown parameter {unknown[0]!r} (the only one is stream=KEY)")
        if not streams or not streams[0]:
            raise bad("it names no stream key: add ?stream=KEY")
        if len(streams) > 1:
            raise bad("one stream key per URL: serve each stream as a source of its own")
        return cls(
            host=host,
            port=port or DEFAULT_PORT,
            db=int(path or 0),
            stream=streams[0],
            tls=scheme == "rediss",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def shown(self) -> str:
        """The URL without its password, for logs, errors and ``/healthz``."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.db}?stream={self.stream}"

    def client(self, socket_timeout: float | None) -> redis.asyncio.Redis:
        """A redis-py asyncio client for this server; it connects at its first command."""
        module = redis_asyncio()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client: redis.asyncio.Redis = module.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            ssl=self.tls,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=socket_timeout,
            # RESP2: the replies keep one shape whatever redis-py's default protocol is.
            protocol=2,
            # The loop retries itself, with back-off, from the last id it read.
            retry=Retry(NoBackoff(), 0),
        )
        return client


def _hide_password(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", text)


def redis_asyncio() -> Any:
    """``redis.asyncio``, or a one-line error that says how to install it."""
    try:
        import redis.asyncio
    except ImportError:
        raise CannotServe(f"redis:// needs the redis package (redis-py): {INSTALL_HINT}") from None
    return redis.asyncio


def connection_errors() -> tuple[type[BaseException], ...]:
    """What a lost or unreachable Redis raises (redis-py wraps socket errors in these)."""
    from redis.exceptions import ConnectionError, TimeoutError

    return (ConnectionError, TimeoutError, OSError)


class RedisUnavailable(CannotServe):
    """Redis cannot be reached, or refuses us, at start-up (exit 4)."""


def unavailable(target: RedisTarget, error: BaseException) -> RedisUnavailable:
    reason = str(error) or type(error).__name__
    return RedisUnavailable(
        f"cannot connect to Redis at {target.shown}: {reason} (is redis-server running there?)"
    )
