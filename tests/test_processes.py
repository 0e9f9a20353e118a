"""Worker pools whose processes end with their parent, even when it is killed with SIGKILL, and
that drop the work not begun when their block is left by an exception."""

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
