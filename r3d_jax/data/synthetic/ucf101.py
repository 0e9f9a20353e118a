"""UCF-101's layout: `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` and `ucfTrainTestlist/`.

Videos are MPEG-4 Part 2 in AVI (fourcc XVID), 320x240, 25 fps, like the real ones.
`ucfTrainTestlist/` holds `classInd.txt` ("1 MoveUp", 1-based), `trainlist0{1,2,3}.txt`
("Class/v_x.avi 1") and `testlist0{1,2,3}.txt` ("Class/v_x.avi"), split by group as UCF-101 is:
a group's videos are all in train or all in test.

One UCF-101 quirk is reproduced on purpose: the class `HandstandPushups` (folder and classInd)
stores its videos as `v_HandStandPushups_*.avi`, so readers must take the class from the folder.
"""

from __future__ import annotations

from collections.abc import Sequence

from r3d_jax.data.synthetic import render, tree

VIDEOS_DIRNAME = 'UCF-101'
SPLITS_DIRNAME = 'ucfTrainTestlist'
VARIANTS = ('',)
SOURCES = {'videos_dir': VIDEOS_DIRNAME, 'splits_dir': SPLITS_DIRNAME}
# UCF-101 stores this class's files with a capital S, unlike its folder and classInd entry.
FILE_NAME_QUIRKS = {'HandstandPushups': 'HandStandPushups'}


def video_file_name(class_name: str, group: int, clip: int) -> str:
    """UCF-101's file name, including its HandStandPushups spelling."""
    return f'v_{FILE_NAME_QUIRKS.get(class_name, class_name)}_g{group:02d}_c{clip:02d}.avi'


def split_files(
    class_names: Sequence[str], num_groups: int, videos: Sequence[tuple[str, int, int]]
) -> dict[str, str]:
    """classInd.txt (1-based) and the train/test lists of the three splits, by file name.

    `videos` holds (relative path, group, 0-based label) in list order.
    """
    files = {'classInd.txt': ''.join(f'{i + 1} {name}\n' for i, name in enumerate(class_names))}
    for split in range(1, tree.NUM_SPLITS + 1):
        held_out = tree.held_out_groups(num_groups, split)
        files[f'trainlist0{split}.txt'] = ''.join(
            f'{path} {label + 1}\n' for path, group, label in videos if group not in held_out
        )
        files[f'testlist0{split}.txt'] = ''.join(
            f'{path}\n' for path, group, _ in videos if group in held_out
        )
    return files


def plan(parameters: tree.Parameters) -> tree.Plan:
    """The UCF-101-format tree: every class x group x clip, one motion per class."""
    p = parameters
    tree.check_common(p, 'ucf101', VARIANTS)
    motions = render.motion_classes()[: p.num_classes]
    lengths = tree.video_lengths(p, (0,))
    videos, listed = [], []
    for label, motion in enumerate(motions):
        for group in range(1, p.num_groups + 1):
            for clip in range(1, p.clips_per_group + 1):
                relative = f'{motion.name}/{video_file_name(motion.name, group, clip)}'
                videos.append(
                    tree.VideoJob(
                        path=f'{VIDEOS_DIRNAME}/{relative}',
                        segments=((motion, int(lengths[label, group - 1, clip - 1])),),
                        seed=(p.seed, 1, label, group, clip),
                    )
                )
                listed.append((relative, group, label))
    lists = split_files([m.name for m in motions], p.num_groups, listed)
    return tree.Plan(
        videos=videos,
        files={f'{SPLITS_DIRNAME}/{name}': text for name, text in lists.items()},
        sources=dict(SOURCES),
    )
