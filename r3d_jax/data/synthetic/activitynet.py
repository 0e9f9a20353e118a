"""ActivityNet v1.3's layout: `activity_net.v1-3.min.json` and `videos/v_<id>.mp4`.

The JSON holds `version`, `taxonomy` (nodes `{nodeId, nodeName, parentId, parentName}`: a root,
a node per kind of motion, the classes as its leaves) and `database`: per video id (without
`v_`) its `subset` ('training', 'validation' or 'testing'), `duration` (seconds), `resolution`
('WxH'), `url` and `annotations` (`[{segment: [start, end], label}]`, in seconds; empty for
testing). Each video shows its class's motion in `clips_per_group` annotated segments, the
objects still before, between and after them. A segment's times are the boundaries of its
frames (frame i starts at i / fps), rounded to 0.01 s. Videos are H.264 MP4 of mixed sizes and
frame rates (`FORMATS`, in turn); validation holds out UCF-101's split-1 block of each class's
groups (one video per group); a `missing_fraction` of the listed videos is absent and
`corrupt_videos` files are truncated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from r3d_jax.data.synthetic import render, tree

ANNOTATIONS = 'activity_net.v1-3.min.json'
VIDEOS_DIRNAME = 'videos'
SOURCES = {'videos_dir': VIDEOS_DIRNAME, 'annotations': ANNOTATIONS}
VARIANTS = ('',)
VERSION = 'VERSION 1.3'
TESTING_VIDEOS = 2  # Unlabelled videos of the 'testing' subset, of random classes.
# (width, height, fps) of the videos in turn.
FORMATS = (
    (320, 240, 30),
    (480, 360, Fraction(30000, 1001)),
    (640, 360, 25),
    (180, 320, 24),
)


def class_name(motion: render.Motion) -> str:
    """ActivityNet's style, a capitalised phrase: 'HandstandPushups' -> 'Handstand pushups'."""
    return ' '.join(word.lower() for word in render.name_words(motion.name)).capitalize()


def kind(motion: render.Motion) -> str:
    """The taxonomy node above a class: the first kind of movement it has."""
    if any(motion.velocity):
        return 'Drifting'
    if any(motion.swing):
        return 'Swinging'
    if motion.orbit:
        return 'Orbiting'
    return 'Spinning' if motion.spin else 'Zooming'


def taxonomy(motions: Sequence[render.Motion]) -> list[dict[str, Any]]:
    """Root, the kinds the classes have, and the classes as leaves."""
    nodes = [{'nodeId': 0, 'nodeName': 'Root', 'parentId': None, 'parentName': None}]
    kinds = list(dict.fromkeys(kind(m) for m in motions))
    for name in kinds:
        nodes.append({'nodeId': len(nodes), 'nodeName': name, 'parentId': 0, 'parentName': 'Root'})
    for motion in motions:
        parent = 1 + kinds.index(kind(motion))
        nodes.append({
            'nodeId': len(nodes),
            'nodeName': class_name(motion),
            'parentId': parent,
            'parentName': kinds[parent - 1],
        })
    return nodes


def segments_with_gaps(
    motion: render.Motion, lengths: Sequence[int], rng: np.random.Generator, p: tree.Parameters
) -> tuple[tuple[tuple[render.Motion, int], ...], list[tuple[int, int]]]:
    """The video's segments (still, motion, still, ..., still) and the motion's frame ranges."""
    gaps = rng.integers(max(1, p.min_frames // 2), max(1, p.max_frames // 2) + 1, len(lengths) + 1)
    segments, ranges, frame = [(render.STILL, int(gaps[0]))], [], int(gaps[0])
    for length, gap in zip(lengths, gaps[1:], strict=True):
        segments += [(motion, int(length)), (render.STILL, int(gap))]
        ranges.append((frame, frame + int(length)))
        frame += int(length) + int(gap)
    return tuple(segments), ranges


def plan(parameters: tree.Parameters) -> tree.Plan:
    """The ActivityNet-format tree: `num_groups` videos per class, plus testing videos."""
    p = parameters
    tree.check_common(p, 'activitynet', VARIANTS)
    motions = render.motion_classes()[: p.num_classes]
    lengths = tree.video_lengths(p, (0, 5))
    rng = np.random.default_rng([p.seed, 5])
    val_groups = tree.held_out_groups(p.num_groups, 1)
    videos_of_classes = [
        (label, group, 'validation' if group in val_groups else 'training')
        for label in range(p.num_classes)
        for group in range(1, p.num_groups + 1)
    ]
    testing = [(int(rng.integers(p.num_classes)), 0, 'testing') for _ in range(TESTING_VIDEOS)]
    listed = videos_of_classes + testing
    ids = tree.youtube_ids(rng, len(listed))
    # Each class keeps its first training and validation video whole.
    kept = {(label, 1) for label in range(p.num_classes)} | {
        (label, val_groups[0]) for label in range(p.num_classes)
    }
    candidates = [
        index for index, (label, group, _) in enumerate(videos_of_classes)
        if (label, group) not in kept
    ]
    missing, corrupt = tree.damaged_videos(p, candidates, len(listed), (5, 1))
    videos, database = [], {}
    for index, (label, group, subset) in enumerate(listed):
        motion = motions[label]
        row = lengths[label, max(group, 1) - 1]
        segments, ranges = segments_with_gaps(motion, [int(n) for n in row], rng, p)
        width, height, fps = FORMATS[index % len(FORMATS)]
        num_frames = sum(count for _, count in segments)
        database[ids[index]] = {
            'subset': subset,
            'duration': round(float(num_frames / fps), 2),
            'resolution': f'{width}x{height}',
            'url': f'https://www.youtube.com/watch?v={ids[index]}',
            'annotations': [] if subset == 'testing' else [
                {'segment': [round(float(start / fps), 2), round(float(end / fps), 2)],
                 'label': class_name(motion)}
                for start, end in ranges
            ],
        }
        if index in missing:
            continue
        videos.append(
            tree.VideoJob(
                path=f'{VIDEOS_DIRNAME}/v_{ids[index]}.mp4',
                segments=segments,
                seed=(p.seed, 5, index),
                size=(width, height),
                fps=fps,
                codec=render.H264_MP4,
                truncate=index in corrupt,
            )
        )
    annotations = {'version': VERSION, 'taxonomy': taxonomy(motions), 'database': database}
    return tree.Plan(
        videos=videos, files={ANNOTATIONS: json.dumps(annotations)}, sources=dict(SOURCES)
    )
