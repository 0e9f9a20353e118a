"""What every synthetic layout shares: its parameters, the plan of a tree, and writing it.

A layout module turns `Parameters` into a `Plan` -- the videos to render and encode, the text
files (split lists, CSVs, JSON) and the build sources -- without writing anything. `write_tree`
then writes the plan into a staging directory beside the output, encodes the videos in parallel
worker processes, records the parameters, and renames the staging directory into place, so an
interrupted run never leaves a tree that looks whole.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from r3d_jax import console, defaults
from r3d_jax.data.synthetic import render
from r3d_jax.processes import worker_pool

PARAMETERS_FILE = 'synthetic.json'  # What generated a tree, beside its folders.
NUM_SPLITS = 3  # Layouts with official splits have three (UCF-101, HMDB-51).
# UCF-101 has 25 groups and tests on 7 of them per split (groups 1-7, 8-14, 15-21); layouts with
# one test (or validation) set hold out split 1's groups.
TEST_GROUP_FRACTION = 7 / 25


@dataclasses.dataclass(frozen=True)
class Parameters:
    """What a synthetic tree is generated from: `config.data.synthetic`'s fields (see
    `r3d_jax/defaults.py` for what each means in each layout)."""

    num_classes: int
    num_groups: int
    clips_per_group: int
    min_frames: int
    max_frames: int
    seed: int
    variant: str
    missing_fraction: float
    corrupt_videos: int


def parameters_from(given: Mapping[str, Any]) -> Parameters:
    """`Parameters` from `given`, the schema's defaults filling the rest; unknown names fail."""
    schema = defaults.get_config().data.synthetic.to_dict()
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise ValueError(
            f'Unknown synthetic parameter(s) {unknown}; the parameters are {sorted(schema)} '
            '(config.data.synthetic in r3d_jax/defaults.py).'
        )
    return Parameters(**{**schema, **given})


def check_common(parameters: Parameters, dataset: str, variants: Sequence[str]) -> None:
    """Rejects parameters no layout can use, and variants `dataset` does not have."""
    p = parameters
    available = len(render.motion_classes())
    if not 1 <= p.num_classes <= available:
        raise ValueError(f'num_classes must be in [1, {available}], got {p.num_classes}.')
    if p.num_groups < NUM_SPLITS:
        raise ValueError(
            f'num_groups must be at least {NUM_SPLITS} (one test group per split), '
            f'got {p.num_groups}.'
        )
    if p.clips_per_group < 1:
        raise ValueError(f'clips_per_group must be at least 1, got {p.clips_per_group}.')
    if not 1 <= p.min_frames <= p.max_frames:
        raise ValueError(
            f'Need 1 <= min_frames <= max_frames, got min_frames={p.min_frames}, '
            f'max_frames={p.max_frames}.'
        )
    if p.variant not in variants:
        raise ValueError(
            f'variant must be one of {list(variants)} for {dataset}, got {p.variant!r}.'
        )
    if not 0 <= p.missing_fraction < 1:
        raise ValueError(f'missing_fraction must be in [0, 1), got {p.missing_fraction}.')
    if p.corrupt_videos < 0:
        raise ValueError(f'corrupt_videos must be at least 0, got {p.corrupt_videos}.')


def held_out_groups(num_groups: int, split_number: int) -> range:
    """Groups (1-based) held out for testing in a split, as UCF-101 does it (1-7, 8-14, 15-21)."""
    per_split = max(1, round(num_groups * TEST_GROUP_FRACTION))
    return range((split_number - 1) * per_split + 1, split_number * per_split + 1)


def video_lengths(parameters: Parameters, stream: Sequence[int]) -> np.ndarray:
    """Frame counts [num_classes, num_groups, clips_per_group], uniform in [min, max]."""
    p = parameters
    return np.random.default_rng([p.seed, *stream]).integers(
        p.min_frames, p.max_frames + 1, size=(p.num_classes, p.num_groups, p.clips_per_group)
    )


# ---------------------------------------------------------------------------------------------
# The plan of a tree.


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """One video file to write: where (relative to the tree), what it shows, how it is stored.

    `truncate` cuts the finished file to half its bytes: a corrupt download.
    """

    path: str
    segments: tuple[tuple[render.Motion, int], ...]  # Motions and their frame counts, in order.
    seed: tuple[int, ...]
    size: tuple[int, int] = (render.WIDTH, render.HEIGHT)  # Width, height.
    fps: int | Fraction = render.FPS
    codec: render.Codec = render.XVID_AVI
    truncate: bool = False

    def frames(self) -> np.ndarray:
        return render.render_segments(self.segments, self.seed, self.size)

    def write(self, root: str) -> None:
        path = os.path.join(root, self.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        render.write_video(path, self.frames(), self.fps, self.codec)
        if self.truncate:
            with open(path, 'r+b') as file:
                file.truncate(os.path.getsize(path) // 2)


@dataclasses.dataclass(frozen=True)
class PanningVideoJob(VideoJob):
    """A video rendered cheaply (`render.panning_frames`), for long benchmark videos."""

    def frames(self) -> np.ndarray:
        (motion, count), = self.segments
        return render.panning_frames(motion, count, self.seed, self.size)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a tree holds, before anything is written."""

    videos: list[VideoJob]
    files: dict[str, str]  # Relative path -> text (split lists, CSVs, JSON).
    sources: dict[str, str]  # Build flag -> path relative to the tree (see SyntheticTree).


@dataclasses.dataclass(frozen=True)
class SyntheticTree:
    """A generated tree: where it is, what generated it, and what its dataset build reads.

    `sources` maps the dataset builder's flags (`videos_dir`, `splits_dir`, `train_csv`,
    `val_csv`, `annotations`) to absolute paths inside `root`.
    """

    root: str
    dataset: str
    parameters: dict[str, Any]
    sources: dict[str, str]


def damaged_videos(
    parameters: Parameters, candidates: Sequence[int], num_listed: int, stream: Sequence[int]
) -> tuple[set[int], set[int]]:
    """Which of `candidates` (indices of listed videos) are missing -- missing_fraction of the
    `num_listed`, rounded up -- and which are corrupt, drawn at random, disjoint."""
    missing = math.ceil(parameters.missing_fraction * num_listed)
    corrupt = parameters.corrupt_videos
    if missing + corrupt > len(candidates):
        raise ValueError(
            f'{missing} missing (missing_fraction={parameters.missing_fraction}) and {corrupt} '
            f'corrupt video(s) need more videos than the {len(candidates)} that may be damaged '
            '(each class keeps its first training and test video); raise num_groups or '
            'clips_per_group, or lower missing_fraction or corrupt_videos.'
        )
    order = np.random.default_rng([parameters.seed, *stream]).permutation(candidates).tolist()
    return set(order[:missing]), set(order[missing : missing + corrupt])


# Characters of YouTube video ids (base64url).
_ID_CHARACTERS = np.array(list('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'))


def youtube_ids(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct 11-character YouTube-like ids; every fourth starts with '-' (which a
    command line can mistake for an option)."""
    ids: list[str] = []
    seen = set()
    while len(ids) < count:
        characters = _ID_CHARACTERS[rng.integers(len(_ID_CHARACTERS), size=11)]
        if len(ids) % 4 == 1:
            characters[0] = '-'
        video_id = ''.join(characters)
        if video_id not in seen:
            seen.add(video_id)
            ids.append(video_id)
    return ids


# ---------------------------------------------------------------------------------------------
# Writing.


def _check_empty(output_dir: str) -> None:
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise FileExistsError(f'{output_dir} exists and is not an empty directory.')


def write_tree(
    output_dir: str, dataset: str, parameters: Mapping[str, Any], plan: Plan, workers: int = 0
) -> SyntheticTree:
    """Writes `plan` into `output_dir` (absent or empty), atomically; `workers=0`: one worker
    process per CPU core."""
    output_dir = os.path.abspath(output_dir)
    _check_empty(output_dir)
    parent, name = os.path.split(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f'.{name}.incomplete-', dir=parent)
    try:
        if plan.videos:
            num_workers = min(workers or os.cpu_count() or 1, len(plan.videos))
            console.phase(f'Generating {len(plan.videos)} synthetic {dataset} videos into {output_dir}')
            with (
                worker_pool(num_workers) as pool,
                console.progress(
                    total=len(plan.videos), desc=f'synthetic {dataset} videos', unit='video'
                ) as progress,
            ):
                futures = [pool.submit(job.write, staging) for job in plan.videos]
                for done in concurrent.futures.as_completed(futures):
                    done.result()
                    progress.update()
        write_text_files(staging, plan.files)
        record = {'dataset': dataset, 'parameters': dict(parameters), 'sources': plan.sources}
        write_text_files(staging, {PARAMETERS_FILE: json.dumps(record, indent=2) + '\n'})
        _check_empty(output_dir)
        # Renaming onto an empty directory replaces it; the tree appears whole or not at all.
        os.rename(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _tree(output_dir, record)


def write_text_files(root: str, files: Mapping[str, str]) -> None:
    """Writes each text exactly as given (no newline translation)."""
    for relative, text in files.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8', newline='') as file:
            file.write(text)


def absolute_sources(root: str, sources: Mapping[str, str]) -> dict[str, str]:
    """Build sources relative to a tree as paths inside `root`."""
    return {flag: os.path.join(root, path) for flag, path in sources.items()}


def _tree(root: str, record: Mapping[str, Any]) -> SyntheticTree:
    if 'dataset' not in record:  # Written before there were layouts: parameters only.
        return SyntheticTree(root=root, dataset='', parameters=dict(record), sources={})
    return SyntheticTree(
        root=root,
        dataset=record['dataset'],
        parameters=dict(record['parameters']),
        sources=absolute_sources(root, record['sources']),
    )


def generated_tree(output_dir: str) -> SyntheticTree | None:
    """The tree `write_tree` wrote in `output_dir`, or None if it wrote none there (`dataset`
    is '' for a record written before there were layouts, which holds only parameters)."""
    path = os.path.join(output_dir, PARAMETERS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return _tree(os.path.abspath(output_dir), json.load(file))
