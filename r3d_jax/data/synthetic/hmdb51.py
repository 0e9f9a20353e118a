"""HMDB-51's layout: `hmdb51_org/<class>/<video>.avi` and `testTrainMulti_7030_splits/`.

Videos are MPEG-4 Part 2 in AVI (fourcc DX50, DivX 5), 320x240, 30 fps. Class names are
lowercase with underscores (`move_up`, `handstand_pushups`), file names HMDB's: the source film
or clip (odd names with brackets, `&`, `;`, `'`, `!`, `#`), the class, the visible body part,
camera motion, number of people, viewpoint and quality, then the clip's number
(`April_09_move_up_u_nm_np1_ba_goo_0.avi`). A group is one source; its clips are numbered 0, 1...

`testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt` list every video of the class as
`<video file name> <id>`: 1 train, 2 test, 0 unused in that split, in HMDB's proportions (3,570
train, 1,530 test and 1,666 unused of 6,766), whole sources at a time, each split testing other
sources. Every other line ends with a space, as many of HMDB's lines do.
"""

from __future__ import annotations

import numpy as np

from r3d_jax.data.synthetic import render, tree

VIDEOS_DIRNAME = 'hmdb51_org'
SPLITS_DIRNAME = 'testTrainMulti_7030_splits'
VARIANTS = ('',)
SOURCES = {'videos_dir': VIDEOS_DIRNAME, 'splits_dir': SPLITS_DIRNAME}
FPS = 30
TRAIN, TEST, UNUSED = 1, 2, 0  # The ids of the split files.
TEST_FRACTION = 1530 / 6766
UNUSED_FRACTION = 1666 / 6766
# Sources as HMDB names them: films with years, brackets and punctuation, web clips.
SOURCE_NAMES = (
    'April_09',
    'Hamlet_(1996)',
    'Tom_&_Jerry_Show',
    "Ocean's_Eleven",
    'Bruce_Lee_[Enter_the_Dragon]',
    'Rock;Paper;Scissors',
    '#20_Rhythm',
    '(Rad)Schlag_die_Bank!',
    'American_History_X',
    'Finding_Forrester_3',
    'IamLegend',
    'Jump_-_the_Movie',
)
# HMDB's meta tags: visible body part, camera motion, people, viewpoint, quality.
TAGS = (('f', 'h', 'u', 'l'), ('cm', 'nm'), ('np1', 'np2', 'np3'), ('fr', 'ba', 'le', 'ri'),
        ('bad', 'med', 'goo'))


def class_name(motion: render.Motion) -> str:
    """HMDB's style: 'HandstandPushups' -> 'handstand_pushups'."""
    return '_'.join(word.lower() for word in render.name_words(motion.name))


def source_name(label: int, group: int) -> str:
    """The source of a class's group (1-based): distinct for the groups of one class, and
    starting further down the list for each class, so that a few classes use every name."""
    name = SOURCE_NAMES[(group - 1 + 3 * label) % len(SOURCE_NAMES)]
    repeat = (group - 1) // len(SOURCE_NAMES)
    return f'{name}_{repeat + 1}' if repeat else name


def split_ids(num_groups: int, rng: np.random.Generator) -> np.ndarray:
    """ids [split, group] (1 train, 2 test, 0 unused): each split tests its own block of a
    random order of the groups and leaves the next block unused."""
    num_test = max(1, round(num_groups * TEST_FRACTION))
    num_unused = round(num_groups * UNUSED_FRACTION)
    order = rng.permutation(num_groups)
    ids = np.full((tree.NUM_SPLITS, num_groups), TRAIN)
    for split in range(tree.NUM_SPLITS):
        start = split * num_test
        ids[split, order[np.arange(start, start + num_test) % num_groups]] = TEST
        unused = np.arange(start + num_test, start + num_test + num_unused) % num_groups
        ids[split, order[unused]] = UNUSED
    return ids


def plan(parameters: tree.Parameters) -> tree.Plan:
    """The HMDB-51-format tree: every class x source x clip, one motion per class."""
    p = parameters
    tree.check_common(p, 'hmdb51', VARIANTS)
    motions = render.motion_classes()[: p.num_classes]
    lengths = tree.video_lengths(p, (0, 2))
    videos, files = [], {}
    for label, motion in enumerate(motions):
        name = class_name(motion)
        rng = np.random.default_rng([p.seed, 2, label])
        ids = split_ids(p.num_groups, rng)
        listed = []
        for group in range(1, p.num_groups + 1):
            for clip in range(p.clips_per_group):
                tags = '_'.join(str(rng.choice(choices)) for choices in TAGS)
                file_name = f'{source_name(label, group)}_{name}_{tags}_{clip}.avi'
                videos.append(
                    tree.VideoJob(
                        path=f'{VIDEOS_DIRNAME}/{name}/{file_name}',
                        segments=((motion, int(lengths[label, group - 1, clip])),),
                        seed=(p.seed, 2, label, group, clip),
                        fps=FPS,
                        codec=render.DIVX_AVI,
                    )
                )
                listed.append((file_name, group))
        listed.sort()
        for split in range(tree.NUM_SPLITS):
            files[f'{SPLITS_DIRNAME}/{name}_test_split{split + 1}.txt'] = ''.join(
                f'{file_name} {ids[split, group - 1]}{" " if line % 2 else ""}\n'
                for line, (file_name, group) in enumerate(listed)
            )
    return tree.Plan(videos=videos, files=files, sources=dict(SOURCES))
