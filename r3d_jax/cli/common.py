"""What every command does the same way around its `main`.

- Its JAX backend is chosen before JAX starts (`backends.choose_platform`).
- `--help` lists its flags and shows its docstring, though they are defined in this package
  rather than in the script that runs (absl shows those of the script only).
- SIGTERM and SIGINT end it with a message and exit status 0 (`stop_signals`).
- Known errors end it with `error: <message>` and status 1, never a traceback.
- Its log goes to a file beside its outputs (`log_file`), its terminal stays readable.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import app, flags

from r3d_jax import backends, console, stop_signals

FLAGS = flags.FLAGS


def define_verbose_flag(log_place: str) -> None:
    flags.DEFINE_bool(
        'verbose',
        False,
        f"Show every log line in the terminal, the libraries' INFO lines included (they always "
        f'go to {log_place}).',
    )


def log_file(workdir: str, command: str, process_index: int = 0) -> str:
    """`<workdir>/logs/<command>.log`; other processes of a multi-process run get their own."""
    name = command if process_index == 0 else f'{command}.process{process_index}'
    return os.path.join(workdir, 'logs', f'{name}.log')


def shown_path(path: str) -> str:
    """`path` relative to the working directory when it lies inside it, else absolute."""
    path = os.path.abspath(path)
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def closing_rows(workdir: str, log_path: str, devices: str) -> list[tuple[str, str]]:
    """The last rows of a command's summary: its log, TensorBoard, what it ran with."""
    return [
        ('log', shown_path(log_path)),
        ('TensorBoard', f'tensorboard --logdir {shown_path(workdir)}'),
        ('measured with', f'{backends.format_versions(backends.versions())} on {devices}'),
    ]


@contextlib.contextmanager
def stops_cleanly() -> Iterator[None]:
    """SIGTERM or SIGINT inside the block end the command: a message, then exit status 0."""
    try:
        with stop_signals.raise_on_stop_signals():
            yield
    except stop_signals.StopRequested as stop:
        during = console.current_phase()
        where = f' during: {during}' if during else ''
        console.note(
            f'Stopped by {stop.signal_name}{where}. Nothing half-written is kept as complete; '
            'run the same command again to continue.'
        )
        sys.exit(0)


@contextlib.contextmanager
def errors_without_traceback(*errors: type[BaseException]) -> Iterator[None]:
    """`errors` raised inside the block end the command with `error: <message>`, status 1."""
    try:
        yield
    except errors as error:
        sys.exit(f'error: {error}')


def _list_in_help(names: Sequence[str]) -> None:
    """Makes absl's `--help` list the flags `names`, which it shows for the main script only."""
    main_script = sys.argv[0]
    listed = FLAGS.flags_by_module_dict().get(main_script, [])
    for name in names:
        if FLAGS[name] not in listed:
            FLAGS.register_flag_by_module(main_script, FLAGS[name])


def start(
    doc: str,
    main: Callable[[list[str]], Any],
    define_flags: Callable[[], None],
    *,
    flags_parser: Callable[[list[str]], list[str]] | None = None,
) -> None:
    """Runs a command: defines its flags, parses them and calls `main` under `stops_cleanly`.

    Its flags are defined here rather than at import, so that every command module can be
    imported into one process (tests, the installed package's import check). `main` starts
    with the console's logging set up without a file (absl's own handler, which `app.run`
    installs, would echo every record); it may set it up again with its log file.
    """

    def main_with_console(argv: list[str]) -> Any:
        console.setup_logging(None)
        return main(argv)

    backends.choose_platform()
    before = set(FLAGS)
    define_flags()
    _list_in_help(sorted(set(FLAGS) - before))
    sys.modules['__main__'].__doc__ = doc  # What absl's --help prints first.
    with stops_cleanly():
        app.run(main_with_console, flags_parser=flags_parser or app.parse_flags_with_usage)
