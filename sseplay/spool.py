"""Inputs that cannot be served as they are, copied once to a temporary file.

Serving reads a file many times, at any offset: the start-up check reads it through,
then every client reads the pages it needs. Standard input, a named pipe, a process
substitution (``<(cmd)``) and a device can be read once only, and a gzip file only
from its start (a page near the end of a large one meant decompressing everything
before it, every time). So these are copied, decompressed, to a temporary directory
first, and that directory is removed on every way out: a normal exit, an error,
Ctrl-C or SIGTERM during the check or while serving (``Spools`` is a context manager,
and a finalizer removes the directory at interpreter exit if nobody closed it).

While copying, the input is held to what JSON text can be (RFC 8259): a byte such as
NUL is refused at once, so ``/dev/zero`` or a gzip bomb of zeros stops at its first
chunk. Copying also stops before the temporary directory's disk is full.
"""

from __future__ import annotations

import re
import shutil
import stat
import sys
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from sseplay.errors import InputError
from sseplay.records import is_gzip, open_binary

STDIN_NAME = "-"
COPY_CHUNK = 1 << 20
# Copying stops when less than this would be left free on the temporary directory's disk.
FREE_SPACE_RESERVE = 256 << 20
# How often (in bytes copied) the free space is looked at again.
FREE_SPACE_CHECK_EVERY = 64 << 20

# Bytes that JSON text never holds, in or out of strings: C0 controls other than tab,
# LF and CR (RFC 8259 section 2, whitespace; section 7, control characters in strings
# must be escaped). Valid UTF-8 never has them inside a multi-byte character either.
_NOT_JSON = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")

Report = Callable[[int, int | None], None]


class Spools:
    """The temporary files of one run; ``close()`` (or leaving the ``with``) removes them."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        reserve: int = FREE_SPACE_RESERVE,
        stdin: IO[bytes] | None = None,
    ) -> None:
        self._parent = directory
        self._reserve = reserve
        self._stdin = stdin
        self._directory: Path | None = None
        self._remove: weakref.finalize[[Path], Spools] | None = None

    @property
    def directory(self) -> Path:
        """The temporary directory, made when the first input is copied into it."""
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="sseplay-", dir=self._parent))
            # Runs at close(), when this object is collected, or at interpreter exit.
            self._remove = weakref.finalize(self, _remove_tree, self._directory)
        return self._directory

    def close(self) -> None:
        if self._remove is not None:
            self._remove()

    def __enter__(self) -> Spools:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def prepare(self, argument: str, label: str, report: Report | None = None) -> Path:
        """A regular, uncompressed file with the content ``argument`` names: the file itself
        when it is one, else a copy in the temporary directory. Anything it cannot
        classify (missing, unreadable) is returned as it is for ``load_event_file`` to
        report."""
        if argument == STDIN_NAME:
            stdin = self._stdin if self._stdin is not None else sys.stdin.buffer
            return self._copy(stdin, label, None, report)
        path = Path(argument)
        try:
            mode = path.stat().st_mode
        except OSError:
            return path
        if stat.S_ISDIR(mode):
            return path
        if stat.S_ISREG(mode):
            try:
                compressed = is_gzip(path)
            except OSError:
                return path
            if not compressed:
                return path
            total = path.stat().st_size
            on_read = None if report is None else (lambda done: report(done, total))
            try:
                with open_binary(path, True, on_read) as stream:
                    return self._copy(stream, label, None, None)
            except (OSError, EOFError) as error:  # a broken or cut-off gzip stream
                raise InputError(label, f"cannot be decompressed to its end: {error}") from None
        # A pipe, <(cmd), a device, a socket: readable once, as a stream.
        try:
            with path.open("rb", buffering=0) as stream:
                return self._copy(stream, label, None, report)
        except OSError as error:
            raise InputError(label, f"cannot be read: {error.strerror or error}") from None

    def _copy(
        self, source: IO[bytes], label: str, total: int | None, report: Report | None
    ) -> Path:
        with tempfile.NamedTemporaryFile(
            dir=self.directory, prefix="input-", suffix=".json", delete=False
        ) as target:
            copied = 0
            next_space_check = 0
            while chunk := source.read(COPY_CHUNK):
                bad = _NOT_JSON.search(chunk)
                if bad is not None:
                    raise InputError(
                        label,
                        f"byte {copied + bad.start() + 1:,} is 0x{chunk[bad.start()]:02x}, "
                        "which is never part of JSON text: this is not an event file "
                        "(it needs UTF-8 JSON: an array or JSON Lines)",
                    )
                if copied >= next_space_check:
                    self._check_space(label, copied)
                    next_space_check = copied + FREE_SPACE_CHECK_EVERY
                target.write(chunk)
                copied += len(chunk)
                if report is not None:
                    report(copied, total)
        return Path(target.name)

    def _check_space(self, label: str, copied: int) -> None:
        free = shutil.disk_usage(self.directory).free
        if free - FREE_SPACE_CHECK_EVERY < self._reserve:
            raise InputError(
                label,
                f"the temporary directory {self.directory.parent} has too little free space "
                f"left after copying {copied >> 20:,} MiB of the input (sseplay keeps "
                f"{self._reserve >> 20:,} MiB free): set TMPDIR to a larger disk, or give "
                "sseplay a plain (decompressed) file",
            )


def _remove_tree(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
