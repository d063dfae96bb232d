"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

from pathlib import Path


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` as one printable line: control characters and line breaks (which a malformed
    input file can put into a message) are escaped, and an overlong message is cut."""
    if not text.isprintable():
        text = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text
        )
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SeqrecError(Exception):
    """Base class for every error seqrec reports to a user: the message says what and how to fix it.

    The message is always one printable line (see :func:`one_line`).
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


class ConfigError(SeqrecError):
    """A bad option, config key or value."""


class DataError(SeqrecError):
    """Bad or missing input data.

    ``DataError("expected an integer item id, got 'x'", path="a.txt", line=3)`` renders as
    ``a.txt:3: expected an integer item id, got 'x'``.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        super().__init__(where + message)


class TrainingError(SeqrecError):
    """Training cannot go on (e.g. a NaN loss); the message carries the diagnosis."""
