"""The Redis tests' fixtures: a real ``redis-server`` per module, a stream key per test."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A stream key of this test's own, on the module's shared server."""
    return f"{request.node.name}-{time.monotonic_ns()}"
