"""What a person reads in the terminal: one line per phase, progress bars, a closing summary.

Phases, progress and log lines go to stderr, so that a command's results (tables, predictions,
the summary) can be piped from stdout. `setup_logging` decides which log records reach the
terminal: this package's own lines (its modules log through `logging.getLogger(__name__)`) and
everyone's warnings and errors; the libraries' INFO chatter (Orbax, TFDS, absl, CLU) goes to
the log file only, unless `verbose`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import tqdm

PACKAGE = 'r3d_jax'
PHASE_PREFIX = '==> '
_FILE_FORMAT = '%(asctime)s %(levelname).1s %(name)s %(filename)s:%(lineno)d] %(message)s'
_VERBOSE_FORMAT = '%(levelname).1s %(asctime)s %(name)s %(filename)s:%(lineno)d] %(message)s'
# Records that `phase` and `note` already wrote to the terminal carry this, for the file only.
_FILE_ONLY = 'r3d_jax_file_only'
_logger = logging.getLogger(__name__)

# Warnings known to be harmless, kept out of the terminal (they stay in the log file):
# (logger or source-path fragment, message start, why it is harmless).
KNOWN_HARMLESS = (
    (
        'tensorflow_datasets',
        'Using custom data configuration',
        'TFDS warns whenever a builder is given its config as an object rather than by a '
        'registered name; the frames builders always pass their (split, frame size) config so.',
    ),
    (
        'orbax',
        'CheckpointManagerOptions.read_only=True',
        'Orbax says that a manager opened read-only will not save; the package opens one '
        'read-only on purpose to find or read checkpoints (checkpoints.create_manager).',
    ),
    (
        'orbax',
        'Given directory is read only',
        'The same read-only manager, announced a second time.',
    ),
)

_current_phase: str | None = None
_log_file: str | None = None  # As `setup_logging` set them.
_verbose = False


# ---------------------------------------------------------------------------------------------
# Phases, notes and progress bars.


def phase(title: str) -> None:
    """Announces the start of a phase of a command (data generation, build, training...)."""
    global _current_phase
    _current_phase = title
    tqdm.tqdm.write(f'{PHASE_PREFIX}{title}', file=sys.stderr)
    _logger.info('%s%s', PHASE_PREFIX, title, extra={_FILE_ONLY: True})


def current_phase() -> str | None:
    """The title of the last phase announced, for messages about an interruption."""
    return _current_phase


def note(message: str) -> None:
    """A line between progress bars (a skipped video, a reused chunk)."""
    tqdm.tqdm.write(message, file=sys.stderr)
    _logger.info('%s', message, extra={_FILE_ONLY: True})


def progress(*, total: int | None, desc: str, unit: str, initial: int = 0) -> tqdm.tqdm:
    """A progress bar with count, rate and ETA; use it as a context manager.

    A bar opened while another is shown (validation during training) vanishes when closed. On a
    stderr that is not a terminal the bar is written as whole lines instead (`LineBar`).
    """
    bar_class = tqdm.tqdm if is_terminal(sys.stderr) else LineBar
    return bar_class(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=None,  # Kept on the terminal only when it is the only bar.
    )


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, 'isatty', None)
    return bool(isatty and isatty())


class _WholeLines:
    """Writes a tqdm bar as whole lines, for a log file or a pipe: one after every
    `LINE_SECONDS` of progress and one for the final state, none at the start; no carriage
    returns, no cursor moves, no lines cleared.

    A terminal's bar is redrawn in place; in a file each redraw would stay, with the escape codes
    that move between nested bars.
    """

    LINE_SECONDS = 60.0
    _line_n: int | None = None  # The count and time of the last line written.
    _line_time = 0.0

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == '':  # tqdm clearing a bar that closes: nothing was drawn in place.
            return False
        now = self._time()
        if self._line_n is None:  # The first display, when the bar opens.
            self._line_n, self._line_time = self.n, now
            return True
        finished = self.total is not None and self.n >= self.total
        if self.n != self._line_n and (finished or now - self._line_time >= self.LINE_SECONDS):
            self._write_line(now)
        return True

    def _write_line(self, now: float) -> None:
        self.fp.write(f'{self}\n')
        self.fp.flush()
        self._line_n, self._line_time = self.n, now

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: every line written stays."""

    def moveto(self, n: int) -> None:
        """No cursor to move between bars."""

    def close(self) -> None:
        if not self.disable and self._line_n is not None and self.n != self._line_n:
            self._write_line(self._time())
        self.leave = False  # tqdm's closing line and its newline are written above, or moot.
        super().close()


class LineBar(_WholeLines, tqdm.tqdm):
    """`progress`'s bar on a stderr that is not a terminal."""


class StepBar(tqdm.tqdm):
    """A bar over training steps: steps done, clips per second, the ETA of the steps left.

    The rate is the mean over this run's steps, with the time spent in `paused()` blocks
    (validation) left out, so the ETA counts training steps only; the elapsed time is the
    wall time.
    """

    def __init__(self, *args: Any, clips_per_step: int, **kwargs: Any) -> None:
        # Read by the first display, which happens inside super().__init__.
        self.clips_per_step = clips_per_step
        self._paused_seconds, self._pause_start = 0.0, None
        super().__init__(*args, **kwargs)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leaves the time spent in the block out of the rate."""
        self._pause_start = self._time()
        try:
            yield
        finally:
            self._paused_seconds += self._time() - self._pause_start
            self._pause_start = None

    @property
    def format_dict(self) -> dict[str, Any]:
        figures = super().format_dict
        steps = figures['n'] - figures['initial']
        paused = self._paused_seconds
        if self._pause_start is not None:  # Lines written during a pause redraw the bar.
            paused += self._time() - self._pause_start
        training_seconds = figures['elapsed'] - paused
        rate = steps / training_seconds if steps and training_seconds > 0 else None
        figures['rate'] = rate
        figures['clips_per_s'] = f'{rate * self.clips_per_step:,.1f}' if rate else '?'
        return figures


def step_progress(*, total_steps: int, done_steps: int, clips_per_step: int) -> StepBar:
    """A `StepBar` over a run's training steps; call `update()` after each step.

    On a stderr that is not a terminal it is written as whole lines (`StepLines`).
    """
    bar_class = StepBar if is_terminal(sys.stderr) else StepLines
    return bar_class(
        total=total_steps,
        initial=done_steps,
        desc='training',
        unit='step',
        file=sys.stderr,
        dynamic_ncols=True,
        clips_per_step=clips_per_step,
        bar_format=(
            '{desc}: {percentage:3.0f}%|{bar}| step {n_fmt}/{total_fmt} '
            '[{elapsed}<{remaining}, {clips_per_s} clips/s]'
        ),
    )


class StepLines(_WholeLines, StepBar):
    """`step_progress`'s bar on a stderr that is not a terminal."""


def summary_block(title: str, rows: Sequence[tuple[str, str]]) -> str:
    """`title` and aligned `label  value` rows between two rules, as printed at a run's end."""
    width = max((len(label) for label, _ in rows), default=0)
    lines = [f'  {label:<{width}}  {value}' for label, value in rows]
    rule = '-' * max(len(title), *(len(line) for line in lines), 40)
    return '\n'.join([rule, title, *lines, rule])


def format_duration(seconds: float) -> str:
    """'1h02m03s', '4m05s', '6.1s'."""
    if seconds < 60:
        return f'{seconds:.1f}s'
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'


# ---------------------------------------------------------------------------------------------
# Logging.


def _origin(record: logging.LogRecord) -> str:
    """The library a record comes from: absl's records all carry the logger name 'absl'."""
    if record.name != 'absl':
        return record.name
    path = record.pathname.replace(os.sep, '/')
    if '-packages/' in path:
        return path.split('-packages/', 1)[1].split('/', 1)[0]
    return os.path.splitext(os.path.basename(path))[0]


def _is_own(record: logging.LogRecord) -> bool:
    return record.name == PACKAGE or record.name.startswith(f'{PACKAGE}.')


def _is_known_harmless(record: logging.LogRecord) -> bool:
    origin = f'{record.name} {record.pathname}'
    message = record.getMessage()
    return any(
        source in origin and message.startswith(start) for source, start, _ in KNOWN_HARMLESS
    )


class _ConsoleFilter(logging.Filter):
    """This package's INFO lines and everyone's warnings; everything when verbose."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self._verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _FILE_ONLY, False):
            return False
        if self._verbose:
            return True
        if record.levelno >= logging.WARNING:
            return _is_own(record) or not _is_known_harmless(record)
        return _is_own(record) and record.levelno >= logging.INFO


class _ConsoleFormatter(logging.Formatter):
    """Own INFO lines as they are; warnings with their level and, for libraries, their origin.

    A library's traceback is cut to its last line here (the log file keeps it whole).
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f'{message} ({type(error).__name__}: {error})'.replace('\n', ' ')
        if record.levelno < logging.WARNING:
            return message
        origin = '' if _is_own(record) else f' ({_origin(record)})'
        return f'{record.levelname}{origin}: {message}'


class _ConsoleHandler(logging.Handler):
    """Writes through tqdm, so that log lines appear above the progress bars, not inside."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # Logging must never raise; report it the way logging does.
            self.handleError(record)


def _quiet_tensorflow_native_logs() -> None:
    """TF_CPP_MIN_LOG_LEVEL=1: TensorFlow's C++ INFO lines off, its warnings and errors kept.

    It takes effect for TensorFlow imported after this call, and in every worker process started
    after it (workers inherit the environment). A value the user set is kept.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')


def native_output_log() -> str | None:
    """Where native (C++) output that is not for the terminal goes: the log file, if any.

    None with `verbose` (everything stays on the terminal) or without a log file.
    """
    return None if _verbose else _log_file


@contextlib.contextmanager
def native_output_to(path: str | None) -> Iterator[None]:
    """Inside the block, what native code writes to stderr (fd 2) is appended to `path`."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def import_tensorflow() -> Any:
    """Imports TensorFlow with its start-up notices sent to the log file; returns the module.

    TensorFlow's C++ side prints notices before its logging starts, so TF_CPP_MIN_LOG_LEVEL
    cannot stop them: absl's "All log messages before absl::InitializeLog() is called are
    written to STDERR", then "oneDNN custom operations are on" (results may differ by rounding).
    On CPUs without AVX-512 it adds, once per process at its first uint8 operation, an
    error-level "oneDNN supports DT_UINT8 only on platforms with AVX-512. Falling back to the
    default Eigen-based implementation". All are harmless here: TensorFlow only decodes, crops
    and batches uint8 frames, and falls back to its standard kernels. One uint8 operation run in
    the block makes the last notice come out here too. The notices go to the log file, or
    nowhere without one; with `verbose` they stay on the terminal.
    """
    destination = native_output_log() or (None if _verbose else os.devnull)
    with native_output_to(destination):
        import tensorflow as tf

        tf.transpose(tf.zeros([1, 1], tf.uint8))
    return tf


def setup_logging(log_file: str | None, verbose: bool = False) -> str | None:
    """Routes all log records: to `log_file` and, filtered, to the terminal (stderr).

    `log_file` (appended to; its folder is created) receives every record at INFO and above.
    The terminal receives this package's INFO lines and everyone's warnings and errors, except
    the `KNOWN_HARMLESS` ones; with `verbose`, every record at INFO and above, in full. absl's
    handler, which would echo every record to stderr, is taken off the root logger. Worker
    processes started afterwards (`r3d_jax.processes`) send their native output to the log file
    too (see `native_output_log`). Calling it again replaces the previous set-up. Returns the
    log file's absolute path (or None).
    """
    from absl import logging as absl_logging

    global _log_file, _verbose
    _quiet_tensorflow_native_logs()
    root = logging.getLogger()
    root.removeHandler(absl_logging.get_absl_handler())
    for handler in [h for h in root.handlers if getattr(h, PACKAGE, False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.INFO)
    logging.getLogger('absl').setLevel(logging.NOTSET)  # Inherit the root's level.
    logging.captureWarnings(True)

    console = _ConsoleHandler()
    console.addFilter(_ConsoleFilter(verbose))
    console.setFormatter(logging.Formatter(_VERBOSE_FORMAT) if verbose else _ConsoleFormatter())
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file = os.path.abspath(log_file)
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
        to_file = logging.FileHandler(log_file, mode='a', encoding='utf-8')
        to_file.setFormatter(logging.Formatter(_FILE_FORMAT))
        handlers.append(to_file)
    for handler in handlers:
        setattr(handler, PACKAGE, True)
        root.addHandler(handler)
    _log_file, _verbose = log_file, verbose
    _logger.info(
        '%s started: %s',
        os.path.basename(sys.argv[0]),
        ' '.join(sys.argv[1:]),
        extra={_FILE_ONLY: True},
    )
    return log_file


class _LinesToLog(io.TextIOBase):
    """A text stream that logs each complete line written to it."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger, self._pending = logger, ''

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split('\n')
        for line in lines:
            if line.strip():
                self._logger.info('%s', line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._logger.info('%s', self._pending.rstrip())
        self._pending = ''


@contextlib.contextmanager
def printed_to_log(logger_name: str) -> Iterator[None]:
    """Turns what is printed to stdout inside the block into INFO records of `logger_name`.

    For libraries that print progress notices to stdout (TFDS's "Downloading and preparing
    dataset ..."), which must stay free for results.
    """
    stream = _LinesToLog(logging.getLogger(logger_name))
    with contextlib.redirect_stdout(stream):
        try:
            yield
        finally:
            stream.flush()
