"""Worker processes that never outlive the process that started them, however it ends.

A parent killed with SIGKILL (an out-of-memory killer, a preempting scheduler) runs no cleanup
code, so its workers must notice on their own: on Linux the kernel sends them SIGKILL when the
parent dies (`PR_SET_PDEATHSIG`), and everywhere a watchdog thread exits once the parent is
gone (the worker is then re-parented, so `os.getppid()` changes). Workers are spawned, never
forked: the parent may hold threads (TensorFlow, JAX) that a forked child would inherit in an
unknown state.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from r3d_jax import console

_PR_SET_PDEATHSIG = 1  # From <linux/prctl.h>.
WATCHDOG_INTERVAL_SECONDS = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Makes this process end as soon as the process `parent_pid` ends.

    Call it first thing in a child. On Linux the death signal is tied to the parent's thread
    that started the child; a watchdog covers the rest (and other systems).
    """
    if sys.platform.startswith('linux'):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # The parent died before the death signal was armed.
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name='parent-watchdog', daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCHDOG_INTERVAL_SECONDS)
    os._exit(1)


def _initialise_worker(
    parent_pid: int,
    native_output: str | None,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
) -> None:
    die_with_parent(parent_pid)
    if native_output is not None:
        # What native code prints here (TensorFlow's start-up notices, once per worker; a
        # crashing decoder's last words) belongs in the log, not between the parent's bars.
        target = os.open(native_output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(target, 2)
        os.close(target)
    # The parent handles Ctrl-C and SIGTERM (which may reach the whole process group) and shuts
    # the pool down; workers must neither print a KeyboardInterrupt traceback each nor die
    # under the parent's feet, which would break the pool before it stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


class _WorkerPool(concurrent.futures.ProcessPoolExecutor):
    """Leaving its block by an exception (an error, a stop request) drops the work not begun.

    The executor's own exit would run every submitted task first, which for a build is most of
    the work.
    """

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> bool:
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False


def worker_pool(
    processes: int,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of `processes` spawned workers that end with this process.

    Use it as a context manager; `initializer(*initargs)` runs in each worker after the
    death signal is armed. Workers ignore SIGINT and SIGTERM: the parent decides when to stop.
    Their stderr goes to the log file `console.setup_logging` opened, if any.
    """
    return _WorkerPool(
        processes,
        mp_context=multiprocessing.get_context('spawn'),
        initializer=_initialise_worker,
        initargs=(os.getpid(), console.native_output_log(), initializer, initargs),
    )


@dataclasses.dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: killed at its time-out.
    output: str  # stdout and stderr, interleaved.
    seconds: float


# Run by `run_command` in the child: arm the death signal, then become the command (the signal
# survives exec).
_TRAMPOLINE = (
    'import sys; sys.path.insert(0, sys.argv[1]); '
    'from r3d_jax.processes import _exec_with_parent; _exec_with_parent()'
)


def _exec_with_parent() -> None:
    """argv: [-c, package root, parent pid, command...]."""
    die_with_parent(int(sys.argv[2]))
    os.execvp(sys.argv[3], sys.argv[3:])


def run_command(
    command: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> CommandResult:
    """Runs `command` with its output captured, ended with this process, and killed with its
    whole process group once `timeout` seconds have passed.

    The command becomes a process group of its own (programs that start helpers, such as
    torch.compile, are killed whole); its death signal is armed before it starts, so it ends
    even when this process is killed with SIGKILL.
    """
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, '-c', _TRAMPOLINE, package_root, str(os.getpid()), *command],
        cwd=cwd,
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        returncode = None
    return CommandResult(returncode, output, time.perf_counter() - start)
