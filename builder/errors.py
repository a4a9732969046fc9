"""The single user-facing error type, and the problems it carries.

Every failure a user should see becomes a `MeshseedError`; `cli.main` catches it once,
prints it and exits with its status. Anything else is a bug and shows a traceback only
with `--debug`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input, located as `file:line: key.path: message (hint)`."""

    file: str
    line: int
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        subject = f" {self.path}:" if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{subject} {self.message}{hint}"


class MeshseedError(Exception):
    """An error meant for the user: a message, an optional hint and an exit status."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: ExitStatus = ExitStatus.FAILED,
        problems: Iterable[Problem] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status
        self.problems = tuple(sorted(problems))

    def __str__(self) -> str:
        lines = [str(problem) for problem in self.problems]
        lines.append(self.message + (f" ({self.hint})" if self.hint else ""))
        return "\n".join(lines)


def bad_input(message: str, *, hint: str | None = None) -> MeshseedError:
    """An error caused by what the user gave us; exits with status 2."""
    return MeshseedError(message, hint=hint, status=ExitStatus.BAD_INPUT)
