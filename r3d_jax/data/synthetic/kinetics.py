"""Kinetics' layout: annotation CSVs and `<youtube_id>_<start:06d>_<end:06d>.mp4` clips.

    annotations/train.csv      label,youtube_id,time_start,time_end,split,is_cc
    annotations/validate.csv   label,youtube_id,time_start,time_end,split
    videos/<label>/<id>_<start>_<end>.mp4

As a download of Kinetics looks: the optional `is_cc` column (in train.csv only, so readers meet
both headers), integer seconds, 11-character ids (some starting with '-'), labels with spaces,
and one label with an apostrophe, parentheses and a comma, so that only a CSV reader parses it.
Clips are H.264 MP4 of mixed sizes and frame rates (`FORMATS`, in turn, a portrait one among
them), one is VP9 WebM (`.webm`, as downloaders write some), a `missing_fraction` of the listed
clips is absent and `corrupt_videos` files are truncated. Validation holds out UCF-101's split-1
block of each class's groups. Variants: '' label folders with spaces, 'underscore_folders'
(spaces spelt '_'), 'flat' (all clips in `videos/`).

`benchmark_plan` is a tree of long clips that is cheap to render, for decoding benchmarks.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from r3d_jax.data.synthetic import render, tree

VIDEOS_DIRNAME = 'videos'
TRAIN_CSV = 'annotations/train.csv'
VAL_CSV = 'annotations/validate.csv'
SOURCES = {'videos_dir': VIDEOS_DIRNAME, 'train_csv': TRAIN_CSV, 'val_csv': VAL_CSV}
VARIANTS = ('', 'underscore_folders', 'flat')
# (width, height, fps) of the clips in turn: Kinetics' common 340x256 and 640x360, a portrait
# phone video, NTSC's fractional rate, 24 fps film.
FORMATS = (
    (340, 256, 30),
    (640, 360, Fraction(30000, 1001)),
    (180, 320, 30),
    (480, 360, 25),
    (340, 256, 24),
)
QUOTED_LABEL = 2  # The class whose label holds an apostrophe, parentheses and a comma.
HEADER = ('label', 'youtube_id', 'time_start', 'time_end', 'split')
BENCHMARK_SECONDS, BENCHMARK_FPS = 10, 30
BENCHMARK_SIZES = ((640, 360), (340, 256))
BENCHMARK_CLASSES = 10


def label_name(motions: Sequence[render.Motion], label: int) -> str:
    """Kinetics' style, lowercase words: 'MoveSideways' -> 'move sideways'."""
    words = ' '.join(word.lower() for word in render.name_words(motions[label].name))
    if label == min(QUOTED_LABEL, len(motions) - 1):
        return f"{words} (someone's, in game)"
    return words


def clip_file_name(youtube_id: str, start: int, end: int, extension: str = 'mp4') -> str:
    return f'{youtube_id}_{start:06d}_{end:06d}.{extension}'


def label_folder(label: str, variant: str) -> str:
    """Where a label's clips lie inside `videos/`."""
    return {'': label, 'underscore_folders': label.replace(' ', '_'), 'flat': ''}[variant]


def csv_text(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """CSV as Kinetics writes it: '\\n' line ends, fields quoted only where needed."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def plan(parameters: tree.Parameters) -> tree.Plan:
    """The Kinetics-format tree: every class x group x clip, one YouTube id each."""
    p = parameters
    tree.check_common(p, 'kinetics', VARIANTS)
    motions = render.motion_classes()[: p.num_classes]
    lengths = tree.video_lengths(p, (0, 4))
    per_class = p.num_groups * p.clips_per_group
    rng = np.random.default_rng([p.seed, 4])
    ids = tree.youtube_ids(rng, p.num_classes * per_class)
    val_groups = tree.held_out_groups(p.num_groups, 1)
    clips, kept = [], []  # (label, group, clip, split); indices of each class's first train/val.
    for label in range(p.num_classes):
        firsts = {}
        for group in range(1, p.num_groups + 1):
            split = 'val' if group in val_groups else 'train'
            for clip in range(1, p.clips_per_group + 1):
                firsts.setdefault(split, len(clips))
                clips.append((label, group, clip, split))
        kept.extend(firsts.values())
    kept_set = set(kept)
    candidates = [index for index in range(len(clips)) if index not in kept_set]
    missing, corrupt = tree.damaged_videos(p, candidates, len(clips), (4, 1))
    webm = min(set(candidates) - missing - corrupt, default=None)
    videos, rows = [], {'train': [], 'val': []}
    for index, (label, group, clip, split) in enumerate(clips):
        num_frames = int(lengths[label, group - 1, clip - 1])
        width, height, fps = FORMATS[index % len(FORMATS)]
        start = int(rng.integers(0, 290))
        end = start + max(1, round(num_frames / fps))
        name = label_name(motions, label)
        row = [name, ids[index], start, end, split]
        rows[split].append([*row, int(rng.integers(2))] if split == 'train' else row)
        if index in missing:
            continue
        extension, codec = ('webm', render.VP9_WEBM) if index == webm else ('mp4', render.H264_MP4)
        folder = '/'.join(filter(None, (VIDEOS_DIRNAME, label_folder(name, p.variant))))
        videos.append(
            tree.VideoJob(
                path=f'{folder}/{clip_file_name(ids[index], start, end, extension)}',
                segments=((motions[label], num_frames),),
                seed=(p.seed, 4, label, group, clip),
                size=(width, height),
                fps=fps,
                codec=codec,
                truncate=index in corrupt,
            )
        )
    files = {
        TRAIN_CSV: csv_text(rows['train'], (*HEADER, 'is_cc')),
        VAL_CSV: csv_text(rows['val'], HEADER),
    }
    return tree.Plan(videos=videos, files=files, sources=dict(SOURCES))


def benchmark_plan(num_clips: int, seed: int) -> tree.Plan:
    """`num_clips` clips of 10 s at 30 fps, half 640x360 and half 340x256, H.264, in label
    folders; the last tenth (at least one) are listed for validation, with labels that the
    training clips have too. Each frame is the first one shifted, so rendering costs little
    next to encoding."""
    if num_clips < 2:
        raise ValueError(f'num_clips must be at least 2 (train and validation), got {num_clips}.')
    num_val = max(1, num_clips // 10)
    num_classes = min(BENCHMARK_CLASSES, num_clips - num_val)
    motions = render.motion_classes()[:num_classes]
    rng = np.random.default_rng([seed, 7])
    ids = tree.youtube_ids(rng, num_clips)
    videos, rows = [], {'train': [], 'val': []}
    for index, youtube_id in enumerate(ids):
        split = 'val' if index >= num_clips - num_val else 'train'
        label = index % num_classes
        name = label_name(motions, label)
        start = int(rng.integers(0, 290))
        end = start + BENCHMARK_SECONDS
        row = [name, youtube_id, start, end, split]
        rows[split].append([*row, 0] if split == 'train' else row)
        videos.append(
            tree.PanningVideoJob(
                path=f'{VIDEOS_DIRNAME}/{name}/{clip_file_name(youtube_id, start, end)}',
                segments=((motions[label], BENCHMARK_SECONDS * BENCHMARK_FPS),),
                seed=(seed, 7, index),
                size=BENCHMARK_SIZES[index % len(BENCHMARK_SIZES)],
                fps=BENCHMARK_FPS,
                codec=render.H264_MP4,
            )
        )
    files = {
        TRAIN_CSV: csv_text(rows['train'], (*HEADER, 'is_cc')),
        VAL_CSV: csv_text(rows['val'], HEADER),
    }
    return tree.Plan(videos=videos, files=files, sources=dict(SOURCES))
