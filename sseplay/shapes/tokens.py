"""Splitting a turn's text into tokens, and tool-call arguments into fragments.

Whatever the split, the pieces joined are the input exactly: spaces, punctuation and
non-ASCII included, since a client that drops or doubles a byte between two deltas is
the bug such a stream exists to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

from sseplay.errors import UsageError

# A word with the whitespace before it, as models' tokenizers cut text (" world"); the
# whitespace at the very end, if any, is a piece of its own.
_WORD = re.compile(r"\s*\S+|\s+$")
# Arguments are cut where a tokenizer would: runs of letters and digits, runs of
# whitespace, and every other character alone.
_ARGUMENT_PIECE = re.compile(r"\w+|\s+|.", re.DOTALL)
# Fragments of arguments are at least this long (characters), as a model's JSON tokens are.
_ARGUMENT_FRAGMENT = 4
_CHUNK_HELP = "--chunk must be words:N or chars:N with N a whole number from 1, such as words:1"


@dataclass(frozen=True, slots=True)
class Chunking:
    unit: Literal["words", "chars"] = "words"
    size: int = 1

    def __post_init__(self) -> None:
        if self.unit not in ("words", "chars") or isinstance(self.size, bool):
            raise UsageError(f"{_CHUNK_HELP}, not {self.unit}:{self.size!r}")
        if not isinstance(self.size, int) or self.size < 1:
            raise UsageError(f"{_CHUNK_HELP}, not {self.unit}:{self.size!r}")

    @classmethod
    def parse(cls, text: str) -> Chunking:
        """``words:1``, ``chars:4``; a bare ``words`` or ``chars`` is a size of 1."""
        unit, _, size = text.strip().partition(":")
        if unit not in ("words", "chars") or (size and not size.isdigit()):
            raise UsageError(f"{_CHUNK_HELP}, not {text!r}")
        return cls(cast(Literal["words", "chars"], unit), int(size) if size else 1)

    def __str__(self) -> str:
        return f"{self.unit}:{self.size}"


def split_text(text: str, chunking: Chunking) -> list[str]:
    """The tokens of ``text``: ``"".join(result) == text``; no empty token."""
    pieces = list(text) if chunking.unit == "chars" else _WORD.findall(text)
    size = chunking.size
    return ["".join(pieces[start : start + size]) for start in range(0, len(pieces), size)]


def split_arguments(arguments_json: str) -> list[str]:
    """The fragments a tool call's arguments arrive in: at least two (the case fakes miss:
    a client must join before parsing), joined exactly the input."""
    fragments: list[str] = []
    current = ""
    for piece in _ARGUMENT_PIECE.findall(arguments_json):
        current += piece
        if len(current) >= _ARGUMENT_FRAGMENT:
            fragments.append(current)
            current = ""
    if current:
        fragments.append(current)
    if len(fragments) < 2:
        half = len(arguments_json) // 2
        fragments = [arguments_json[:half], arguments_json[half:]]
    return fragments
