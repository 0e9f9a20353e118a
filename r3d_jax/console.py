"""What a person reads in the terminal: one line per phase and progress bars with rate and ETA.

Phases and progress go to stderr, so that a command's results (tables, predictions) can be
piped from stdout.
"""

from __future__ import annotations

import sys

import tqdm


def phase(title: str) -> None:
    """Announces the start of a phase of a command (data generation, build, training...)."""
    tqdm.tqdm.write(f'==> {title}', file=sys.stderr)


def progress(*, total: int | None, desc: str, unit: str, initial: int = 0) -> tqdm.tqdm:
    """A progress bar with count, rate and ETA; use it as a context manager."""
    return tqdm.tqdm(
        total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True
    )


def note(message: str) -> None:
    """A line between progress bars (a skipped video, a reused chunk)."""
    tqdm.tqdm.write(message, file=sys.stderr)
