"""Wording shared by the command line, sweeps and reports."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number it needs: ``counted(1, "run")`` is "1 run",
    ``counted(3, "run")`` "3 runs" (``plural`` for nouns that do not just take an s)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
