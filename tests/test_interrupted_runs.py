"""train.py interrupted while it generates or builds its data.

SIGKILL (which runs no cleanup) must leave no process of the run behind; SIGTERM must stop the
run cleanly (a message, exit status 0, no traceback, nothing half-written kept as complete), and
running the command again must complete. Each run starts in its own session, so that its process
group holds it and every process it started; the phase is read from its terminal output. The
synthetic data are sized so that generating and building take several seconds on two workers.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
import time

import pytest

from r3d_jax.data import synthetic
from tests.test_training import (
    REPO,
    load_config,
    subprocess_environment,
    train_py_command,
    write_tiny_config,
)

SLOW_CONFIG = '''
"""The tiny run over more and longer synthetic videos, decoded by two workers."""

from r3d_jax import defaults


def get_config():
    config = defaults.recipe_beside(__file__, 'tiny_config.py')
    config.data.raw_dir = {raw_dir!r}
    config.data.synthetic.num_groups = 5
    config.data.synthetic.clips_per_group = 2
    config.data.synthetic.min_frames = 20
    config.data.synthetic.max_frames = 40
    config.data.build_workers = 2
    return config
'''
# The bars' counts once the first video is done: workers are running then.
GENERATING = r'==> Generating.*synthetic \w+ videos:\s+\d+%\|[^|]*\|\s+[1-9]\d*/'
BUILDING = r'==> Building.*train videos:\s+\d+%\|[^|]*\|\s+[1-9]\d*/'


class Run:
    """train.py in its own session, its stderr collected by a thread as it comes.

    Its stderr is a pseudo-terminal, as in a person's shell, so that its bars are redrawn as
    they move (in a pipe they would write a line only once a minute).
    """

    def __init__(self, config_path: str, workdir: str, *overrides: str) -> None:
        self._terminal, terminal = pty.openpty()
        # 40 rows of 160 columns: a new pseudo-terminal has none, and tqdm draws no bar in 0.
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 160, 0, 0))
        self.process = subprocess.Popen(
            train_py_command(config_path, workdir, *overrides),
            cwd=REPO,
            env=subprocess_environment(1),
            stdout=subprocess.PIPE,
            stderr=terminal,
            start_new_session=True,
        )
        os.close(terminal)
        self.stderr = b''
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while chunk := os.read(self._terminal, 65536):
                self.stderr += chunk
        except OSError:  # EIO: the process and its children have closed the terminal.
            pass
        finally:
            os.close(self._terminal)

    @property
    def text(self) -> str:
        return self.stderr.decode(errors='replace').replace('\r', '\n')

    def wait_for(self, pattern: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text, re.DOTALL):
            assert self.process.poll() is None, f'ended before {pattern!r}:\n{self.text[-3000:]}'
            assert time.monotonic() < deadline, f'no {pattern!r} in:\n{self.text[-3000:]}'
            time.sleep(0.05)

    def finish(self, timeout: float = 600) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) once the process has ended."""
        stdout = self.process.stdout.read()  # Stderr is the reader thread's.
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.process.returncode, stdout.decode(errors='replace'), self.text


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes of process group `group`."""
    members = []
    for stat_path in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(stat_path) as file:
                fields = file.read().rsplit(')', 1)[1].split()
        except OSError:  # The process ended while being listed.
            continue
        if int(fields[2]) == group and fields[0] != 'Z':
            members.append(int(stat_path.split('/')[2]))
    return members


def assert_group_ends(group: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_members(group), f'left running: {group_members(group)}'


def write_slow_config(directory: str, raw_dir: str | None = None) -> str:
    """A config writing its data under `directory`, reading videos from `raw_dir` if given."""
    os.makedirs(directory, exist_ok=True)
    write_tiny_config(directory, os.path.join(directory, 'data'))
    path = os.path.join(directory, 'slow_config.py')
    with open(path, 'w') as file:
        file.write(SLOW_CONFIG.format(raw_dir=raw_dir or os.path.join(directory, 'data', 'raw')))
    return path


@pytest.fixture(scope='module')
def raw_dir(tmp_path_factory):
    """Synthetic videos generated for the slow config, so that a run reading them builds first."""
    config = load_config(write_slow_config(str(tmp_path_factory.mktemp('generated'))))
    synthetic.generate(
        config.data.dataset, config.data.raw_dir, **config.data.synthetic, workers=2
    )
    return config.data.raw_dir


def built_datasets(config_path: str) -> list[str]:
    """Datasets under the config's data_dir that load as complete (TFDS writes this last)."""
    data_dir = load_config(config_path).data.data_dir
    return glob.glob(os.path.join(data_dir, '**', 'dataset_info.json'), recursive=True)


def test_sigkill_while_generating_or_building_leaves_no_process_behind(raw_dir, tmp_path):
    for pattern, config_path in (
        (GENERATING, write_slow_config(str(tmp_path / 'generating'))),
        (BUILDING, write_slow_config(str(tmp_path / 'building'), raw_dir)),
    ):
        run = Run(config_path, str(tmp_path / 'workdir'))
        try:
            run.wait_for(pattern)
            group = run.process.pid
            assert len(group_members(group)) >= 3  # train.py and its two workers, at least.
            os.kill(run.process.pid, signal.SIGKILL)
            run.finish()
            assert_group_ends(group)
        finally:
            if run.process.poll() is None:
                os.killpg(run.process.pid, signal.SIGKILL)


def test_sigterm_while_generating_or_building_stops_cleanly_and_a_rerun_completes(
    raw_dir, tmp_path
):
    generating = write_slow_config(str(tmp_path / 'generating'))
    building = write_slow_config(str(tmp_path / 'building'), raw_dir)
    for pattern, config_path, phase in (
        (GENERATING, generating, 'Generating'),
        (BUILDING, building, 'Building'),
    ):
        run = Run(config_path, str(tmp_path / 'workdir'))
        try:
            run.wait_for(pattern)
            run.process.send_signal(signal.SIGTERM)
            status, _, stderr = run.finish()
        finally:
            if run.process.poll() is None:
                os.killpg(run.process.pid, signal.SIGKILL)
        assert status == 0, stderr[-3000:]
        assert 'Traceback' not in stderr
        assert f'Stopped by SIGTERM during: {phase}' in stderr
        assert 'run the same command again to continue' in stderr
        assert_group_ends(run.process.pid)
        assert built_datasets(config_path) == []
    generated = load_config(generating).data.raw_dir
    assert not os.path.exists(generated)
    assert glob.glob(os.path.join(os.path.dirname(generated), '.*incomplete*')) == []

    rerun = Run(
        building,
        str(tmp_path / 'workdir'),
        '--config.num_epochs=1',
        '--config.eval_every_epochs=0',
        '--config.schedule.name=constant',
    )
    status, stdout, stderr = rerun.finish()
    assert status == 0, stderr[-3000:]
    assert 'Training finished' in stdout
    assert len(built_datasets(building)) == 1
