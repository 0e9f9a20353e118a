"""The decode phase of a local build: decoded videos in chunks beside the dataset, resumable.

Each split's videos are decoded in split order by worker processes and written, `chunk_size`
videos at a time, to chunk files in the build cache `<dataset dir>.partial/`. A chunk is written
under a temporary name and renamed when complete, together with the record of what became of
each of its entries (decoded, or skipped and why). Its name holds a digest of everything that
determines its contents (the entries, their files' sizes and modification times, the frame size,
the JPEG quality, the chunk format), so a rerun reuses exactly the chunks a build with the same
parameters would write and decodes only the rest, and chunks written for other parameters are
deleted. Killing a build loses at most the chunks in progress.

A worker process that dies (FFmpeg crashing on one file, the out-of-memory killer) does not end
the build: the videos it may have been decoding are retried one at a time in a fresh process,
the one that kills it again is recorded as skipped with that reason, and decoding goes on with
a new pool. Memory stays bounded: a few videos per worker are in flight, and results go to disk
as they arrive. This module is what decoding workers import: it stays light (no TensorFlow).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from r3d_jax import console, processes
from r3d_jax.data.layouts import DatasetContents, VideoEntry
from r3d_jax.data.video_decoding import DecodedVideo, VideoDecodeError, decode_segments

CHUNK_FORMAT = 1  # Changes whenever what a chunk holds changes: old chunks are then unused.
DEFAULT_CHUNK_SIZE = 64  # Videos per chunk: at most this many are decoded again after a kill.
CHUNK_SUFFIX = '.chunk'
IN_FLIGHT_PER_WORKER = 2  # Videos submitted per worker ahead of the one being written.
WORKER_DIED = 'its decoding process died (killed by a signal, or FFmpeg crashed)'

Example = dict[str, Any]  # The features of one stored example (frames_builder.FEATURES).
FileJob = tuple[VideoEntry, ...]  # The entries of one video file, decoded together.


class ChunkError(RuntimeError):
    """A chunk file of the build cache cannot be read."""


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How videos become stored frames: the parameters every chunk depends on."""

    frame_short_side: int
    jpeg_quality: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one listed entry; written beside the examples, without frames."""

    split: str
    video_id: str
    path: str
    source: str
    reason: str = ''  # Why it was skipped; '' when it was decoded.
    missing: bool = False  # Skipped because its file does not exist.
    codec: str = ''  # The stream's codec, when decoded.
    num_frames: int = 0


def example_of(entry: VideoEntry, video: DecodedVideo) -> Example:
    """The stored record of one decoded entry (the features in frames_builder.FEATURES)."""
    return {
        'frames': video.frames,
        'label': entry.label,
        'class_name': entry.class_name,
        'video_id': entry.video_id,
        'num_frames': len(video.frames),
        'fps': video.fps,
    }


def _skipped(split: str, entry: VideoEntry, reason: str, missing: bool = False) -> Outcome:
    return Outcome(split, entry.video_id, entry.path, entry.source, reason, missing)


def decode_file_job(
    job: FileJob, split: str, decoding: Decoding
) -> list[tuple[Outcome, Example | None]]:
    """Decodes one file's entries: each entry's outcome and, when decoded, its example.

    A missing or undecodable file, and any failure while decoding it, becomes a skip of its
    entries with the reason: one bad video never ends the decoding of the others.
    """
    first = job[0]
    if first.missing:
        return [(_skipped(split, e, f'missing: {e.missing}', missing=True), None) for e in job]
    try:
        videos = decode_segments(
            first.path, decoding.frame_short_side, decoding.jpeg_quality, [e.segment for e in job]
        )
    except VideoDecodeError as error:
        return [(_skipped(split, e, str(error)), None) for e in job]
    except Exception as error:  # Unexpected here; recorded with its type so it can be traced.
        reason = f'unexpected {type(error).__name__} while decoding: {error}'
        return [(_skipped(split, e, reason), None) for e in job]
    results: list[tuple[Outcome, Example | None]] = []
    for entry, video in zip(job, videos, strict=True):
        if isinstance(video, str):
            results.append((_skipped(split, entry, video), None))
        else:
            outcome = Outcome(
                split, entry.video_id, entry.path, entry.source, codec=video.codec,
                num_frames=len(video.frames),
            )
            results.append((outcome, example_of(entry, video)))
    return results


def file_jobs(entries: Sequence[VideoEntry]) -> list[FileJob]:
    """Consecutive entries of the same file (the segments of one video) form one job."""
    jobs: list[list[VideoEntry]] = []
    for entry in entries:
        if jobs and entry.path and jobs[-1][0].path == entry.path:
            jobs[-1].append(entry)
        else:
            jobs.append([entry])
    return [tuple(job) for job in jobs]


# ---------------------------------------------------------------------------------------------
# Decoding in worker processes, in order, with crashes contained.


@dataclasses.dataclass(frozen=True)
class WorkerDied:
    """A job whose worker process died, alone in its pool, while working on it."""

    reason: str = WORKER_DIED


def run_in_order(
    jobs: Iterable[Any], work: Callable[[Any], Any], workers: int
) -> Iterator[Any | WorkerDied]:
    """`work(job)` of each job, computed by `workers` processes, yielded in job order.

    At most IN_FLIGHT_PER_WORKER * workers jobs are in flight, so memory stays bounded however
    slowly results are consumed. When a worker dies, the pool is broken and every job in flight
    is lost: each is then run alone in a fresh one-worker pool (a job that kills that worker
    too yields WorkerDied), and a new pool takes the remaining jobs.
    """
    window = IN_FLIGHT_PER_WORKER * workers
    pending: collections.deque[tuple[Any, concurrent.futures.Future]] = collections.deque()
    pool = processes.worker_pool(workers)
    try:
        iterator = iter(jobs)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < window:
                job = next(iterator, _END)
                if job is _END:
                    exhausted = True
                else:
                    pending.append((job, pool.submit(work, job)))
            if not pending:
                break
            job, future = pending[0]
            try:
                result = future.result()
            except concurrent.futures.BrokenExecutor:
                lost = [job for job, _ in pending]
                pending.clear()
                pool.shutdown(wait=True)
                yield from _run_each_alone(lost, work)
                pool = processes.worker_pool(workers)
                continue
            pending.popleft()
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def _run_each_alone(jobs: Sequence[Any], work: Callable[[Any], Any]) -> Iterator[Any | WorkerDied]:
    pool = None
    try:
        for job in jobs:
            pool = pool or processes.worker_pool(1)
            try:
                yield pool.submit(work, job).result()
            except concurrent.futures.BrokenExecutor:
                pool.shutdown(wait=True)
                pool = None
                yield WorkerDied()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Chunk files: examples, then the outcomes of all entries, then the outcomes' offset.


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Videos [first, first + len(jobs)) of a split, stored in one file of the cache."""

    split: str
    first: int  # Index of its first video (file job) in the split.
    jobs: list[FileJob]
    path: str  # Its file, named by the digest of its contents' parameters.

    def is_complete(self) -> bool:
        return os.path.isfile(self.path)


def _fingerprint(entry: VideoEntry) -> list[Any]:
    """The entry and its file's size and modification time: what its examples depend on."""
    stat = os.stat(entry.path) if entry.path else None
    return [*dataclasses.astuple(entry), stat and stat.st_size, stat and stat.st_mtime_ns]


def plan_chunks(
    contents: DatasetContents, decoding: Decoding, cache_dir: str, chunk_size: int
) -> dict[str, list[Chunk]]:
    """Every split's chunks of `chunk_size` videos, in split order, with their file names."""
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be at least 1, got {chunk_size}.')
    plan = {}
    for split, entries in contents.splits.items():
        jobs = file_jobs(entries)
        chunks = []
        for first in range(0, len(jobs), chunk_size):
            chunk_jobs = jobs[first : first + chunk_size]
            key = json.dumps(
                [CHUNK_FORMAT, dataclasses.astuple(decoding), contents.class_names, split,
                 first, [_fingerprint(entry) for job in chunk_jobs for entry in job]]
            )
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            name = f'{split}-{first // chunk_size:06d}-{digest}{CHUNK_SUFFIX}'
            chunks.append(Chunk(split, first, chunk_jobs, os.path.join(cache_dir, name)))
        plan[split] = chunks
    return plan


class _ChunkWriter:
    """Writes one chunk under a temporary name; `commit` renames it into place."""

    def __init__(self, chunk: Chunk):
        self._chunk = chunk
        self._temporary = f'{chunk.path}.tmp{os.getpid()}'
        self._file: BinaryIO = open(self._temporary, 'wb')  # noqa: SIM115 (closed in commit)
        self._outcomes: list[Outcome] = []

    def add(self, outcome: Outcome, example: Example | None) -> None:
        self._outcomes.append(outcome)
        if example is not None:
            pickle.dump(example, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def commit(self) -> None:
        offset = self._file.tell()
        pickle.dump(_END_OF_EXAMPLES, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(self._outcomes, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(offset.to_bytes(8, 'little'))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.rename(self._temporary, self._chunk.path)


_END_OF_EXAMPLES = 'end of examples'


def read_examples(path: str) -> Iterator[Example]:
    """The examples of a complete chunk, in order (the cache is this build's own pickles)."""
    try:
        with open(path, 'rb') as f:
            while True:
                example = pickle.load(f)
                if example == _END_OF_EXAMPLES:
                    return
                yield example
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        raise ChunkError(f'{path}: unreadable chunk ({error}); delete it and rerun.') from error


def read_outcomes(path: str) -> list[Outcome]:
    """What became of each entry of a complete chunk, read without its frames."""
    try:
        with open(path, 'rb') as f:
            f.seek(-8, os.SEEK_END)
            f.seek(int.from_bytes(f.read(8), 'little'))
            if pickle.load(f) != _END_OF_EXAMPLES:
                raise pickle.UnpicklingError('no outcomes where its trailer points')
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        raise ChunkError(f'{path}: unreadable chunk ({error}); delete it and rerun.') from error


# ---------------------------------------------------------------------------------------------
# The decode phase.


def remove_stale_files(cache_dir: str, plan: Mapping[str, Sequence[Chunk]]) -> None:
    """Deletes chunks of other parameters and the temporary files of killed builds."""
    wanted = {os.path.basename(chunk.path) for chunks in plan.values() for chunk in chunks}
    stale = [name for name in sorted(os.listdir(cache_dir)) if name not in wanted]
    if stale:
        console.note(f'Removing {len(stale)} file(s) of other builds from {cache_dir}.')
    for name in stale:
        os.remove(os.path.join(cache_dir, name))


@dataclasses.dataclass(frozen=True)
class _DecodeTask:
    """A picklable worker call: one file job of one split."""

    split: str
    decoding: Decoding

    def __call__(self, job: FileJob) -> list[tuple[Outcome, Example | None]]:
        return decode_file_job(job, self.split, self.decoding)


def fill(
    plan: Mapping[str, Sequence[Chunk]], decoding: Decoding, workers: int
) -> None:
    """Decodes every video of the chunks not yet complete and writes those chunks."""
    for split, chunks in plan.items():
        todo = [chunk for chunk in chunks if not chunk.is_complete()]
        total = sum(len(chunk.jobs) for chunk in chunks)
        done = total - sum(len(chunk.jobs) for chunk in todo)
        if done:
            console.note(
                f'{split}: reusing {len(chunks) - len(todo)} of {len(chunks)} decoded chunks '
                f'({done} of {total} videos).'
            )
        if todo:
            _decode_chunks(split, todo, decoding, workers, total, done)


def _decode_chunks(
    split: str, chunks: Sequence[Chunk], decoding: Decoding, workers: int, total: int, done: int
) -> None:
    jobs = [job for chunk in chunks for job in chunk.jobs]
    results = run_in_order(jobs, _DecodeTask(split, decoding), min(workers, len(jobs)))
    frames, missing, start = 0, 0, time.monotonic()
    with console.progress(total=total, initial=done, desc=f'{split} videos', unit='video') as bar:
        for chunk in chunks:
            writer = _ChunkWriter(chunk)
            for job in chunk.jobs:
                result = next(results)
                if isinstance(result, WorkerDied):
                    result = [(_skipped(split, entry, result.reason), None) for entry in job]
                for outcome, example in result:
                    writer.add(outcome, example)
                    frames += outcome.num_frames
                    missing += outcome.missing
                    if outcome.reason and not outcome.missing:
                        console.note(f'Skipping {outcome.path}: {outcome.reason}')
                bar.update()
                rate = frames / (time.monotonic() - start)
                bar.set_postfix(frames_per_s=f'{rate:.0f}', refresh=False)
            writer.commit()
    if missing:
        console.note(f'{split}: {missing} listed video(s) missing (recorded as skipped).')
