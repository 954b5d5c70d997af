"""The exception family of the `compress` package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CompressError(Exception):
    """Base class of every error raised on purpose by `compress`."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where, what was given, what was expected."""

    path: str
    given: Any
    expected: str
    choices: tuple[Any, ...] = ()

    def __str__(self) -> str:
        msg = f"{self.path or '<root>'}: got {self.given!r}, expected {self.expected}"
        if self.choices:
            msg += f" (valid: {', '.join(map(str, self.choices))})"
        return msg


class ConfigError(CompressError):
    """A config has one or more problems; all of them are listed."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        n = len(self.problems)
        super().__init__(
            f"{head}{n} problem{'s' if n != 1 else ''} in config: "
            + "; ".join(str(p) for p in self.problems)
        )
