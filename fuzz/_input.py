"""Structured values taken from fuzz bytes, without atheris (so seeds replay anywhere)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class Input:
    """Consumes *data* from the front; past its end every value is empty or zero."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        """One byte, 0 past the end."""
        if self.at >= len(self.data):
            return 0
        self.at += 1
        return self.data[self.at - 1]

    def flag(self) -> bool:
        """One bit of one byte."""
        return bool(self.byte() & 1)

    def pick(self, options: Sequence[T]) -> T:
        """One of *options* (not empty)."""
        return options[self.byte() % len(options)]

    def raw(self, most: int = 255) -> bytes:
        """A length byte, then that many bytes (at most *most*)."""
        size = min(self.byte(), most)
        chunk = self.data[self.at : self.at + size]
        self.at += len(chunk)
        return chunk

    def text(self, most: int = 255) -> str:
        """A short string, decoded as latin-1 (every byte is a character, as HTTP heads are)."""
        return self.raw(most).decode("latin-1")

    def unicode(self, most: int = 255) -> str:
        """A short string decoded as UTF-8 with errors replaced."""
        return self.raw(most).decode("utf-8", "replace")

    def rest(self) -> bytes:
        """Everything not consumed yet."""
        chunk = self.data[self.at :]
        self.at = len(self.data)
        return chunk
