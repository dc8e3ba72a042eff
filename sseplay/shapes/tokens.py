"""Splitting a turn's text into tokens, and tool-call arguments into fragments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Chunking:
    unit: Literal["words", "chars"] = "words"
    size: int = 1

    @classmethod
    def parse(cls, text: str) -> Chunking:
        raise NotImplementedError


def split_text(text: str, chunking: Chunking) -> list[str]:
    raise NotImplementedError


def split_arguments(arguments_json: str) -> list[str]:
    raise NotImplementedError
