"""Errors: user mistakes carry a spec location; archc bugs say they are bugs."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A 1-based position in a spec file (or on the command line)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class ArchcError(Exception):
    """A mistake in the user's input, reported as `FILE:LINE:COL: error: message`."""

    def __init__(self, message: str, location: Location | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint
        self.notes: list[tuple[Location, str]] = []
        """Further places to look, such as the line that imported the file at fault."""

    def render(self, severity: str = "error", context: str = "") -> str:
        """`FILE:LINE:COL: error: message (hint)`, the spec's line with a caret under the
        column, then a `FILE:LINE:COL: note: …` line per note; `context` leads the message."""
        where = f"{self.location}: " if self.location else ""
        hint = f" ({self.hint})" if self.hint else ""
        lines = [f"{where}{severity}: {context}{self.message}{hint}", *_quoted(self.location)]
        lines += [f"{location}: note: {note}" for location, note in self.notes]
        return "\n".join(lines)


def _quoted(location: Location | None) -> list[str]:
    """The source line of `location` and a caret under its column (nothing for a line that
    cannot be read, or one too long to show)."""
    if location is None:
        return []
    try:
        with open(location.file, encoding="utf-8") as file:
            text = next(
                (line for number, line in enumerate(file, 1) if number == location.line), None
            )
    except (OSError, UnicodeDecodeError):
        return []
    if text is None or len(text) > 200:
        return []
    text = text.rstrip("\n").replace("\t", " ")
    return [f"    {text}", "    " + " " * (location.col - 1) + "^"]


class SpecError(ArchcError):
    """The spec is malformed: YAML, schema, references, expressions."""


class ShapeError(ArchcError):
    """Tensor shapes do not fit an op's constraints."""


class ExpectError(ArchcError):
    """A golden value under `expect:` no longer holds."""


class InternalError(Exception):
    """A bug in archc, not in the spec."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"internal error in {stage}: {message} (this is a bug in archc)")
        self.stage, self.message = stage, message


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """A ' (did you mean X?)'-style hint, or '' when nothing is close."""
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
