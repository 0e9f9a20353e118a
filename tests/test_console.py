"""What a person reads: library chatter in the log file, phases, a bar over the steps, a summary.

The unit tests route log records and time a step bar in this process; the end-to-end test runs
the tiny training config through `train.py` (data generation, build, training, validation and
the final evaluation) and reads its terminal output and its log file.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys

import pytest
import tqdm.std
from absl import logging as absl_logging

from r3d_jax import console
from tests.test_training import (
    REPO,
    subprocess_environment,
    train_py_command,
    write_tiny_config,
)


@pytest.fixture
def restored_logging():
    """Gives the test the root logger back as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def _log_one_of_each() -> None:
    logging.getLogger('r3d_jax.training').info('epoch 0  step 1/4  loss 1.6')
    absl_logging.info('Saving checkpoint at step 1')  # How Orbax, TFDS and CLU log.
    logging.getLogger('orbax.checkpoint').warning('Disk almost full')
    logging.getLogger('tensorflow_datasets.core').warning(
        'Using custom data configuration: Ucf101FramesConfig(...)'
    )


def test_library_info_goes_to_the_file_and_own_lines_and_warnings_to_the_terminal(
    tmp_path, capsys, restored_logging
):
    log_file = tmp_path / 'logs' / 'train.log'
    assert console.setup_logging(str(log_file), verbose=False) == str(log_file)

    _log_one_of_each()

    terminal = capsys.readouterr().err.splitlines()
    assert terminal == [
        'epoch 0  step 1/4  loss 1.6',
        'WARNING (orbax.checkpoint): Disk almost full',
    ]
    logged = log_file.read_text()
    for line in ('epoch 0  step 1/4', 'Saving checkpoint at step 1', 'Disk almost full'):
        assert line in logged
    assert 'Using custom data configuration' in logged  # Known harmless: file only.


def test_verbose_shows_the_libraries_info_lines_in_the_terminal(capsys, restored_logging):
    console.setup_logging(None, verbose=True)

    _log_one_of_each()

    terminal = capsys.readouterr().err
    assert 'Saving checkpoint at step 1' in terminal
    assert 'Using custom data configuration' in terminal


def test_printed_lines_become_log_records(tmp_path, capsys, restored_logging):
    log_file = tmp_path / 'run.log'
    console.setup_logging(str(log_file))

    with console.printed_to_log('tensorflow_datasets'):
        print('Downloading and preparing dataset Unknown size ...')
        print('partial line', end='')

    assert capsys.readouterr().out == ''
    logged = log_file.read_text()
    assert 'tensorflow_datasets' in logged and 'Downloading and preparing dataset' in logged
    assert 'partial line' in logged


def test_the_step_bar_leaves_paused_time_out_of_its_rate_and_eta(capsys):
    now = [100.0]
    bar = console.step_progress(total_steps=10, done_steps=2, clips_per_step=16)
    bar._time = lambda: now[0]
    bar.start_t = bar.last_print_t = now[0]
    for _ in range(2):  # Two steps, one second each.
        now[0] += 1.0
        bar.update()
    with bar.paused():  # A 50-second validation.
        now[0] += 50.0
        during = bar.format_dict
    figures = bar.format_dict
    bar.close()

    assert figures['rate'] == pytest.approx(1.0) and during['rate'] == pytest.approx(1.0)
    assert figures['clips_per_s'] == '16.0'
    shown = tqdm_line(figures)
    assert 'step 4/10' in shown and '00:52<00:06' in shown and '16.0 clips/s' in shown


def tqdm_line(figures: dict) -> str:
    return console.StepBar.format_meter(**figures)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_two_bars(monkeypatch) -> None:
    """A step bar over 4 steps with a nested bar and a note inside, a minute per step."""
    now = [1000.0]
    monkeypatch.setattr(tqdm.std, 'time', lambda: now[0])  # The clock tqdm gives each bar.
    bar = console.step_progress(total_steps=4, done_steps=0, clips_per_step=8)
    for step in range(4):
        now[0] += 61.0
        bar.update()
        if step == 1:
            with console.progress(total=3, desc='clip evaluation', unit='video') as nested:
                nested.update(3)
            console.note('a note between the bars')
    bar.close()


def test_bars_in_a_log_file_are_whole_lines_a_minute_apart_without_cursor_moves(
    capsys, monkeypatch
):
    _run_two_bars(monkeypatch)

    written = capsys.readouterr().err
    assert '\r' not in written and '\x1b' not in written
    lines = written.splitlines()
    steps = [line for line in lines if line.startswith('training:')]
    assert [re.search(r'step (\d)/4', line).group(1) for line in steps] == ['1', '2', '3', '4']
    assert sum(line.startswith('clip evaluation: 100%') for line in lines) == 1
    assert 'a note between the bars' in lines


def test_a_bar_closed_early_writes_its_last_state_once(capsys):
    with console.progress(total=10, desc='videos', unit='video') as bar:
        bar.update(3)  # Well within a minute: no line until it closes.

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith('videos:  30%') and '3/10' in lines[0]


def test_on_a_terminal_the_bars_are_redrawn_in_place(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)

    _run_two_bars(monkeypatch)

    assert '\r' in terminal.getvalue()


def test_summary_block_aligns_its_rows():
    block = console.summary_block('Done', [('video top-1', '92.86 %'), ('log', 'a/b.log')])

    lines = block.splitlines()
    assert lines[1] == 'Done'
    assert lines[2] == '  video top-1  92.86 %'
    assert lines[3] == '  log          a/b.log'
    assert lines[0] == lines[-1] and set(lines[0]) == {'-'}


# ---------------------------------------------------------------------------------------------
# The tiny run through train.py.

_LIBRARY_INFO = re.compile(
    r'checkpoint_manager\.py|dataset_info\.py|dataset_builder\.py|Downloading and preparing'
    r'|^I\d{4} |^I0000|oneDNN|Jax plugin configuration error',
    re.MULTILINE,
)


def _summary_rows(stdout: str) -> dict[str, str]:
    """The summary block's rows, label -> value."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith('  ') and '  ' in line.strip():
            label, value = re.split(r'\s{2,}', line.strip(), maxsplit=1)
            rows[label] = value
    return rows


def _train(config_path: str, workdir: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_py_command(config_path, workdir, *extra),
        cwd=REPO,
        env=subprocess_environment(4),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_py_shows_phases_progress_and_a_summary_and_logs_the_rest(tmp_path):
    config_path = write_tiny_config(str(tmp_path), str(tmp_path / 'data'))
    workdir = str(tmp_path / 'workdir')

    run = _train(config_path, workdir, '--config.video_eval_at_end=True')

    assert run.returncode == 0, run.stderr[-3000:]
    terminal = run.stderr + run.stdout
    assert not _LIBRARY_INFO.search(terminal), _LIBRARY_INFO.search(terminal).group()
    assert 'Traceback' not in terminal and 'WARNING' not in terminal
    assert run.stderr.startswith('Devices: 4 x CPU\n')
    phases = [line[4:] for line in run.stderr.splitlines() if line.startswith('==> ')]
    assert [phase.split()[0] for phase in phases] == [
        'Generating',
        'Building',
        'Training',
        'Compiling',
        'Validation',
        'Validation',
        'Final',
    ]
    assert 'epoch 1  step 4/4  loss' in run.stderr
    final_bar = r'training: 100%\|[^|]*\| step 4/4 \[[\d:]+<00:00, [\d.,]+ clips/s\]'
    assert re.search(final_bar, run.stderr)
    rows = _summary_rows(run.stdout)
    assert rows['video top-1'].startswith(tuple('0123456789'))
    for label in ('report', 'confusion figure', 'best checkpoint', 'log'):
        assert os.path.exists(os.path.join(REPO, rows[label])), (label, rows[label])
    assert rows['TensorBoard'] == f'tensorboard --logdir {workdir}'
    assert rows['measured with'].startswith('JAX ') and 'Flax ' in rows['measured with']
    with open(rows['log']) as file:
        log = file.read()
    assert 'checkpoint_manager.py' in log and 'Generating dataset ucf101_frames' in log

    resumed = _train(config_path, workdir, '--config.num_epochs=3', '--verbose')

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Resuming from the checkpoint of step 4 (epoch 2).' in resumed.stderr
    assert 'checkpoint_manager.py' in resumed.stderr  # Orbax's INFO lines, shown.
    assert 'step 6/6' in resumed.stderr
