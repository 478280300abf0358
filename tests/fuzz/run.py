"""Running fuzz cases in this process: the outcome of one spec, by kind."""

from __future__ import annotations

import contextlib
import io
import signal
import traceback
from collections.abc import Iterator
from pathlib import Path

from archc.cli import main
from archc.errors import InternalError

TIME_LIMIT = 10.0
"""Seconds one spec may take in all commands before it counts as a hang."""


class HangError(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise HangError(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(spec: Path, out: Path) -> tuple[str, str]:
    """('ok', '') when check, stats and both builds succeed; ('refused', first line) for a
    located error from check; otherwise ('crash' | 'unlocated' | 'hang' | 'internal' |
    'mismatch', details): a command refusing what check accepted is a mismatch."""
    commands = [
        ["check", str(spec)],
        ["stats", str(spec), "--format", "json"],
        ["build", str(spec), "--backend", "torch", "-o", str(out)],
        ["build", str(spec), "--backend", "flax", "-o", str(out)],
    ]
    for argv in commands:
        stderr = io.StringIO()
        try:
            with (
                time_limit(TIME_LIMIT),
                contextlib.redirect_stderr(stderr),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                status = main(["--debug", *argv])
        except HangError:
            return "hang", " ".join(argv)
        except InternalError as error:
            return "internal", str(error)
        except Exception:
            return "crash", traceback.format_exc(limit=-4)
        first = stderr.getvalue().split("\n", 1)[0]
        if status == 2 and ": error: " in first and first.split(":")[0]:
            if first.startswith("error:"):
                return "unlocated", first
            if argv[0] != "check":
                return "mismatch", f"check accepted what {' '.join(argv[:4])} refuses: {first}"
            return "refused", first
        if status != 0:
            return "internal", first
    return "ok", ""
