"""Worker pools and commands whose processes end with their parent, even one killed with
SIGKILL, and pools that drop the work not begun when their block is left by an exception."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from r3d_jax import processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PARENT = textwrap.dedent(
    """
    import os, sys, time
    from r3d_jax import processes

    if __name__ == '__main__':
        with processes.worker_pool(2) as pool:
            futures = [pool.submit(time.sleep, 0.2) for _ in range(4)]
            for future in futures:
                future.result()
            print(' '.join(str(pid) for pid in pool._processes), flush=True)
            time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has ended all the same.
    with open(f'/proc/{pid}/stat') as stat:
        return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'


def test_workers_end_when_their_parent_is_killed(tmp_path):
    script = tmp_path / 'parent.py'
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        env={**os.environ, 'PYTHONPATH': REPO},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_leaving_a_pool_by_an_exception_drops_the_work_not_begun():
    with pytest.raises(KeyboardInterrupt), processes.worker_pool(1) as pool:
        futures = [pool.submit(time.sleep, 0.5) for _ in range(40)]
        futures[0].result()
        started = time.monotonic()
        raise KeyboardInterrupt  # As a stop request leaves the block.
    # Only the tasks already handed to the worker ran; the rest would take 20 s.
    assert time.monotonic() - started < 5
    assert sum(future.cancelled() for future in futures) >= 35


def test_a_command_runs_with_its_output_and_exit_code():
    result = processes.run_command(
        [sys.executable, '-c', 'import sys; print("out"); sys.exit(3)'], timeout=30
    )
    assert result.returncode == 3 and result.output.strip() == 'out'


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / 'child.pid'
    script = (
        'import subprocess, sys, time; '
        'child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]); '
        f'open({str(pid_file)!r}, "w").write(str(child.pid)); time.sleep(600)'
    )
    start = time.monotonic()
    result = processes.run_command([sys.executable, '-c', script], timeout=3)
    assert result.returncode is None and time.monotonic() - start < 30
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_a_command_ends_when_the_process_that_ran_it_is_killed(tmp_path):
    pid_file = tmp_path / 'command.pid'
    runner = textwrap.dedent(
        """
        import sys
        from r3d_jax import processes
        command = (
            'import os, sys, time; open(sys.argv[1], "w").write(str(os.getpid())); '
            'time.sleep(600)'
        )
        processes.run_command([sys.executable, '-c', command, sys.argv[1]], timeout=600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, '-c', runner, str(pid_file)],
        cwd=REPO,
        env={**os.environ, 'PYTHONPATH': REPO},
    )
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        command = int(pid_file.read_text())
        assert _alive(command)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(command) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(command)
    finally:
        if parent.poll() is None:
            parent.kill()
