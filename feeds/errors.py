"""The one exception tree of the project, and the problem records that loaders return.

Loaders never stop at the first bad input: they collect :class:`Problem` records so an
operator sees every mistake at once, each with the file and line to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input file, located for a human."""

    path: str
    line: int | None
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.severity.value}: {self.message}"


class FeedsError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(FeedsError):
    """config.yaml cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class NotFound(FeedsError):
    """No feed, page or file answers to this name."""


class Unsettled(FeedsError):
    """The document's article is being written right now; ask again in a moment."""
