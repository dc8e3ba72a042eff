"""Process-wide tuning for the ``sseplay serve`` command, and for it alone.

A library ``Server`` must leave the process it runs in as it found it; the command owns
its process, so it lifts the open-file limit and tunes the garbage collector for
thousands of long-lived connections.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator

logger = logging.getLogger("sseplay.server")

# Python's cyclic collector stalls every stream while it walks the objects of the
# connections it looks at: a held connection is ~80 of them. Nothing a request leaves
# behind is a cycle (tests/test_serve.py checks every kind of request), so reference
# counting frees it all at once and the collector has little to find. Its young
# generation runs when 50,000 objects more are alive than before, that is as clients
# join; the middle one, which would walk every client that joined since its last pass
# (50-60 ms at 7,000 clients), only after 100 young passes, and the full one after 10
# of those. Measured with gc.callbacks at 7,000 clients joining in 2 s: the longest
# stall went from 61 ms to 8 ms, drift p99 from 36-41 ms to 6-8 ms.
GC_THRESHOLDS = (50_000, 100, 10)


@contextlib.contextmanager
def server_stack_importing() -> Iterator[None]:
    """Import the server stack (FastAPI, pydantic, uvicorn) without the work ``serve`` never
    needs, measured at launch (issue 12 item 7, ``benchmarks/launch_ab.py``):

    - No collection: FastAPI and pydantic build some 80,000 tracked objects that live as
      long as the process, and the full collection their growth triggers walks them all
      (about 30 ms, for nothing: the imports leave no garbage cycles worth it). They are
      frozen as the pause ends, or the next young collection would walk them all instead.
    - No pydantic validators built at import: FastAPI defines some 40 models at import, its
      OpenAPI document's among them, and pydantic builds each one's validator and
      serializer as the class is created (about 110 ms of CPU). ``serve`` has no OpenAPI
      document and validates no request body, so those models are left to pydantic's
      documented ``defer_build``: a model is built on its first validation, if it ever
      has one. The setting goes on ``BaseModel``'s configuration, which every model
      defined meanwhile inherits, and comes off as the import ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        with _pydantic_builds_deferred():
            yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _pydantic_builds_deferred() -> Iterator[None]:
    from pydantic import BaseModel

    inherited = getattr(BaseModel, "model_config", None)
    if not isinstance(inherited, dict):  # pydantic 1, which older FastAPI releases allow
        yield
        return
    had_setting = "defer_build" in inherited
    before = inherited.get("defer_build", False)
    inherited["defer_build"] = True
    try:
        yield
    finally:
        if had_setting:
            inherited["defer_build"] = before
        else:
            del inherited["defer_build"]


def tune_collector() -> None:
    """Everything built so far (modules, the encoded events) lives as long as the
    process: keep it out of every later collection, and collect older generations
    rarely (see ``GC_THRESHOLDS``). No collection first: walking the whole heap of
    FastAPI and pydantic took about 70 ms of start-up, to free a few start-up cycles."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def raise_open_file_limit() -> None:
    """Every client is an open file, and many systems start a process with a soft limit of
    1,024: lift it to the hard limit (as Go's runtime does for every program), so that
    thousands of clients can connect without anyone raising ``ulimit -n`` first."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one everywhere (macOS caps it lower).
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        logger.debug("the open-file limit stays at %d: %s", soft, error)
        return
    logger.debug("open-file limit raised from %d to %d", soft, wanted)
