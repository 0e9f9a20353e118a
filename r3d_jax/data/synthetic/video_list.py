"""A custom dataset: class folders of H.264 MP4s and `relative/path label` list files.

    videos/<Class>/<Class>_gXX_cYY.mp4     (the first of each class: a name with spaces)
    videos/train.txt, test.txt             `<Class>/<file>.mp4 <label>` lines
    videos/val.txt                         variant 'with_val' only
    videos/classes.txt                     one class name per line; integer labels index it

Labels are written alternately as the class name and as its 0-based line in `classes.txt`, so a
reader must accept both; a path may hold spaces, so a line splits at its last space. Videos come
in mixed sizes and frame rates, a portrait one among them (`FORMATS`, in turn). Splits hold out
whole groups: test is UCF-101's split-1 block of groups, validation the split-2 block.

Variant 'split_folders' writes no list files: `videos/train/<Class>/...` and
`videos/test/<Class>/...`, the split and class given by the folders.
"""

from __future__ import annotations

from fractions import Fraction

from r3d_jax.data.synthetic import render, tree

VIDEOS_DIRNAME = 'videos'
VARIANTS = ('', 'with_val', 'split_folders')
# (width, height, fps) of the videos in turn: landscape, 16:9 with an odd height, square,
# portrait, and NTSC's fractional rate.
FORMATS = (
    (320, 240, 25),
    (480, 270, 30),
    (256, 256, 24),
    (180, 320, 30),
    (320, 240, Fraction(30000, 1001)),
)


def file_name(class_name: str, group: int, clip: int) -> str:
    """`<Class>_gXX_cYY.mp4`, and for the first video of a class a name with spaces."""
    if (group, clip) == (1, 1):
        return f'{class_name} take {group} (copy).mp4'
    return f'{class_name}_g{group:02d}_c{clip:02d}.mp4'


def plan(parameters: tree.Parameters) -> tree.Plan:
    """The list-file (or split-folder) tree: every class x group x clip."""
    p = parameters
    tree.check_common(p, 'video_list', VARIANTS)
    motions = render.motion_classes()[: p.num_classes]
    names = [m.name for m in motions]
    lengths = tree.video_lengths(p, (0, 3))
    test_groups = tree.held_out_groups(p.num_groups, 1)
    val_groups = tree.held_out_groups(p.num_groups, 2) if p.variant == 'with_val' else range(0)
    videos, lists = [], {'train': [], 'val': [], 'test': []}
    for label, motion in enumerate(motions):
        for group in range(1, p.num_groups + 1):
            split = 'test' if group in test_groups else 'val' if group in val_groups else 'train'
            for clip in range(1, p.clips_per_group + 1):
                relative = f'{motion.name}/{file_name(motion.name, group, clip)}'
                if p.variant == 'split_folders':
                    relative = f'{split}/{relative}'
                width, height, fps = FORMATS[len(videos) % len(FORMATS)]
                videos.append(
                    tree.VideoJob(
                        path=f'{VIDEOS_DIRNAME}/{relative}',
                        segments=((motion, int(lengths[label, group - 1, clip - 1])),),
                        seed=(p.seed, 3, label, group, clip),
                        size=(width, height),
                        fps=fps,
                        codec=render.H264_MP4,
                    )
                )
                written = motion.name if len(lists[split]) % 2 == 0 else str(label)
                lists[split].append(f'{relative} {written}\n')
    files = {}
    if p.variant != 'split_folders':
        files[f'{VIDEOS_DIRNAME}/classes.txt'] = ''.join(f'{name}\n' for name in names)
        for split, lines in lists.items():
            if lines:
                files[f'{VIDEOS_DIRNAME}/{split}.txt'] = ''.join(lines)
    sources = {'videos_dir': VIDEOS_DIRNAME}
    if p.variant != 'split_folders':
        sources['splits_dir'] = VIDEOS_DIRNAME
    return tree.Plan(videos=videos, files=files, sources=sources)
