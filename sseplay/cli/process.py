"""Process-wide tuning for the ``sseplay serve`` and ``sseplay record`` commands, and for
them alone.

A library ``Server`` must leave the process it runs in as it found it; the command owns
its process, so it lifts the open-file limit and tunes the garbage collector for
thousands of long-lived connections.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger("sseplay.server")

# Python's cyclic collector stalls every stream while it walks the objects of the
# connections it looks at: a held connection is ~40-80 of them. Nothing a request leaves
# behind is a cycle (tests/http/test_serve.py checks every kind of request), so reference
# counting frees it all at once and the collector has little to find. Its young
# generation runs when 10,000 objects more are alive than before, that is as clients
# join, and a pass walks those alone (1-2 ms; at 50,000 a pass stalled every stream for
# 19-22 ms, the TTFT p99 of benchmarks/shapes_load.py); the middle one, which would walk
# every client that joined since its last pass, only after 100 young passes, and the full
# one after 10 of those. Measured with gc.callbacks at 7,000 clients joining in 2 s: the
# longest stall was 61 ms with Python's defaults, 19 ms with (50,000, 100, 10), 5 ms now.
GC_THRESHOLDS = (10_000, 100, 10)


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
