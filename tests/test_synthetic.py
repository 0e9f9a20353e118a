"""The synthetic datasets: motion classes, UCF-101's layout and codec, group splits, and what
every layout shares (determinism, atomic writing, the parameters record, the command line)."""

import itertools
import json
import os
import re
import subprocess
import sys

import av
import numpy as np
import pytest

from r3d_jax import defaults
from r3d_jax.data import synthetic
from r3d_jax.data.synthetic import render, ucf101

NUM_CLASSES, NUM_GROUPS, CLIPS_PER_GROUP = 4, 3, 2
MIN_FRAMES, MAX_FRAMES = 6, 20


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    """Four classes: MoveUp, HandstandPushups, MoveSideways, Spin."""
    return synthetic.generate(
        'ucf101',
        str(tmp_path_factory.mktemp('synthetic') / 'ucf'),
        num_classes=NUM_CLASSES,
        num_groups=NUM_GROUPS,
        clips_per_group=CLIPS_PER_GROUP,
        min_frames=MIN_FRAMES,
        max_frames=MAX_FRAMES,
        workers=2,
    ).root


def _class_names(tree):
    path = os.path.join(tree, ucf101.SPLITS_DIRNAME, 'classInd.txt')
    with open(path) as f:
        return [line.split()[1] for line in f]


def _list(tree, name):
    with open(os.path.join(tree, ucf101.SPLITS_DIRNAME, name)) as f:
        return [line.split() for line in f]


def _all_videos(tree):
    videos_dir = os.path.join(tree, ucf101.VIDEOS_DIRNAME)
    return sorted(
        f'{folder}/{name}'
        for folder in os.listdir(videos_dir)
        for name in os.listdir(os.path.join(videos_dir, folder))
    )


def _decode(path):
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


def test_tree_has_ucf101_layout_and_split_files(tree):
    names = _class_names(tree)
    assert names == [m.name for m in synthetic.motion_classes()[:NUM_CLASSES]]
    with open(os.path.join(tree, ucf101.SPLITS_DIRNAME, 'classInd.txt')) as f:
        assert f.readline() == f'1 {names[0]}\n'
    assert sorted(os.listdir(os.path.join(tree, ucf101.SPLITS_DIRNAME))) == sorted(
        ['classInd.txt'] + [f'{kind}list0{n}.txt' for kind in ('train', 'test') for n in (1, 2, 3)]
    )
    videos = _all_videos(tree)
    assert len(videos) == NUM_CLASSES * NUM_GROUPS * CLIPS_PER_GROUP
    for video in videos:
        folder, name = video.split('/')
        assert folder in names
        assert re.fullmatch(r'v_\w+_g\d\d_c\d\d\.avi', name), name
    for split in (1, 2, 3):
        train = _list(tree, f'trainlist0{split}.txt')
        test = _list(tree, f'testlist0{split}.txt')
        assert all(len(line) == 2 and line[1] == str(names.index(line[0].split('/')[0]) + 1)
                   for line in train)
        assert all(len(line) == 1 for line in test)
        assert sorted([line[0] for line in train] + [line[0] for line in test]) == videos


def test_handstand_pushups_files_are_spelled_as_in_ucf101(tree):
    folder = os.path.join(tree, ucf101.VIDEOS_DIRNAME, 'HandstandPushups')
    files = os.listdir(folder)
    assert files and all(name.startswith('v_HandStandPushups_g') for name in files)
    listed = [line[0] for line in _list(tree, 'trainlist01.txt')]
    assert 'HandstandPushups/v_HandStandPushups_g02_c01.avi' in listed


def test_splits_hold_out_whole_groups_like_ucf101(tree):
    group = lambda path: int(re.search(r'_g(\d\d)_', path).group(1))
    tested = []
    for split in (1, 2, 3):
        train_groups = {group(line[0]) for line in _list(tree, f'trainlist0{split}.txt')}
        test_groups = {group(line[0]) for line in _list(tree, f'testlist0{split}.txt')}
        assert train_groups and test_groups and not train_groups & test_groups
        tested.append(test_groups)
    assert tested == [{1}, {2}, {3}]
    # UCF-101's own scheme: 7 of 25 groups held out per split.
    assert [list(synthetic.tree.held_out_groups(25, n)) for n in (1, 2, 3)] == [
        list(range(1, 8)), list(range(8, 15)), list(range(15, 22))
    ]


def test_videos_are_xvid_avi_320x240_at_25_fps_with_short_ones(tree):
    lengths = []
    for video in _all_videos(tree):
        path = os.path.join(tree, ucf101.VIDEOS_DIRNAME, video)
        with av.open(path) as container:
            assert container.format.name == 'avi'
            stream = container.streams.video[0]
            assert stream.codec_context.name == 'mpeg4'
            assert stream.codec_context.codec_tag == 'XVID'
            assert (stream.width, stream.height) == (320, 240)
            assert stream.average_rate == 25
            lengths.append(sum(1 for _ in container.decode(stream)))
    assert min(lengths) >= MIN_FRAMES and max(lengths) <= MAX_FRAMES
    assert min(lengths) < 16  # Shorter than one reference clip: readers must loop them.


def test_single_frames_do_not_reveal_the_class(tree):
    """Mean colours per class are as alike as chance makes them (one-way ANOVA F statistic)."""
    names = _class_names(tree)
    colours = {name: [] for name in names}
    for video in _all_videos(tree):
        frames = _decode(os.path.join(tree, ucf101.VIDEOS_DIRNAME, video))
        colours[video.split('/')[0]].append(frames[len(frames) // 2].reshape(-1, 3).mean(0))
    groups = [np.array(colours[name]) for name in names]
    everything = np.concatenate(groups)
    between = sum(len(g) * (g.mean(0) - everything.mean(0)) ** 2 for g in groups)
    within = sum(((g - g.mean(0)) ** 2).sum(0) for g in groups)
    dof_between, dof_within = len(groups) - 1, len(everything) - len(groups)
    f_statistic = (between / dof_between) / (within / dof_within)
    # F(3, 20) exceeds 4.9 with 1 % probability; a colour that followed the class gives >> 10.
    assert np.all(f_statistic < 4.9), f_statistic


def _shifts(frames):
    """Per frame pair, the (dx, dy) in half-resolution pixels that best maps what changed."""
    gray = frames.astype(np.float32).mean(-1)[:, ::2, ::2]
    height, width = gray.shape[1:]
    shifts = []
    for before, after in itertools.pairwise(gray):
        ys, xs = np.nonzero(np.abs(after - before) > 10)
        ys, xs = ys[:: len(ys) // 1000 + 1], xs[:: len(xs) // 1000 + 1]  # Enough to vote.
        errors = {
            (dx, dy): np.abs(before[(ys - dy) % height, (xs - dx) % width] - after[ys, xs]).mean()
            for dx in range(-15, 16)
            for dy in range(-15, 16)
        }
        shifts.append(min(errors, key=errors.get))
    return np.array(shifts)


def test_classes_differ_in_motion(tree):
    """MoveUp drifts up, HandstandPushups bobs up and down, MoveSideways drifts sideways."""
    for name in ('MoveUp', 'HandstandPushups', 'MoveSideways'):
        folder = os.path.join(tree, ucf101.VIDEOS_DIRNAME, name)
        longest = max((_decode(os.path.join(folder, v)) for v in os.listdir(folder)), key=len)
        assert len(longest) >= render.SWING_PERIOD
        shifts = _shifts(longest)
        dx, dy = shifts[:, 0], shifts[:, 1]
        speed = render.FAST / 2  # Pixels per frame at half resolution.
        if name == 'MoveUp':
            assert np.all(np.abs(dx) <= 1) and np.all(np.abs(dy + speed) <= 1), shifts
        elif name == 'HandstandPushups':
            # Near the turning points the object barely moves and the estimate is noisy.
            assert np.median(np.abs(dx)) == 0 and dy.min() <= -4 and dy.max() >= 4, shifts
        else:
            assert np.all(np.abs(dy) <= 1) and np.all(np.abs(np.abs(dx) - speed) <= 1), shifts
            assert len(set(np.sign(dx))) == 1, shifts  # One direction per video.


def test_motion_scales_with_the_short_side_at_any_frame_size():
    """A 640x360 (or portrait 360x640) video moves 1.5x as many pixels per frame as a 320x240
    one: resized to one short side, every size shows the same motion."""
    move_up = render.motion_classes()[0]
    assert move_up.name == 'MoveUp'
    for size in ((320, 240), (640, 360), (360, 640)):
        path = render.trajectory(move_up, 3, np.random.default_rng(0), size)
        steps = (np.diff(path.y) + size[1] / 2) % size[1] - size[1] / 2
        assert steps == pytest.approx([-render.FAST * min(size) / 240] * 2)
    frames = render.render_frames(move_up, 2, (0,), (180, 320))
    assert frames.shape == (2, 320, 180, 3)


def _renderings(motion):
    """Parameters that render the same set of videos: mirrored, and swings reversed (which is
    a half-period phase shift)."""
    forms = set()
    for m in (motion, motion.mirrored()):
        for sign in (1, -1):
            forms.add((m.velocity, (sign * m.swing[0], sign * m.swing[1]), m.orbit, m.spin, m.zoom))
    return frozenset(forms)


def test_horizontal_flips_never_turn_one_class_into_another():
    """The training recipe flips clips left-right, so no two classes may be mirror images."""
    motions = synthetic.motion_classes()
    assert len({_renderings(m) for m in motions}) == len(motions)


def test_each_video_mirrors_its_motion_at_random():
    sideways = next(m for m in synthetic.motion_classes() if m.name == 'MoveSideways')
    rng = np.random.default_rng(0)
    directions = set()
    for _ in range(20):
        x = render.trajectory(sideways, 2, rng).x
        step = (x[1] - x[0] + render.WIDTH / 2) % render.WIDTH - render.WIDTH / 2
        directions.add(np.sign(step))
    assert directions == {-1.0, 1.0}


# ---------------------------------------------------------------------------------------------
# What every layout shares.

TINY = {'num_classes': 2, 'num_groups': 3, 'clips_per_group': 1, 'min_frames': 4, 'max_frames': 6}


def _files(root):
    """Every file under `root`, relative, with its bytes."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


@pytest.mark.parametrize('dataset', list(synthetic.LAYOUTS))
def test_every_layout_writes_the_same_bytes_for_a_seed_and_others_for_another(tmp_path, dataset):
    trees = [
        _files(synthetic.generate(dataset, str(tmp_path / name), workers=1, seed=seed, **TINY).root)
        for name, seed in (('a', 0), ('b', 0), ('c', 1))
    ]
    assert trees[0] == trees[1]
    videos = [path for path in trees[0] if path.endswith(('.avi', '.mp4', '.webm'))]
    assert videos
    assert all(trees[0][path] != trees[2].get(path) for path in videos)


def test_generation_is_deterministic_per_seed_from_the_command_line(tmp_path):
    arguments = ['--dataset=ucf101', '--num_classes=1', '--num_groups=3', '--clips_per_group=1',
                 '--min_frames=4', '--max_frames=6', '--workers=1']
    outputs = []
    for name in ('a', 'b'):
        run = subprocess.run(
            [sys.executable, '-m', 'r3d_jax.data.synthetic', f'--output_dir={tmp_path / name}',
             *arguments],
            capture_output=True, text=True, check=True,
        )
        outputs.append(run.stdout)
    assert f'--videos_dir={tmp_path / "a" / ucf101.VIDEOS_DIRNAME}' in outputs[0]
    assert f'--splits_dir={tmp_path / "a" / ucf101.SPLITS_DIRNAME}' in outputs[0]
    assert _files(tmp_path / 'a') == _files(tmp_path / 'b')


def test_the_tree_records_what_generated_it(tmp_path):
    generated = synthetic.generate('hmdb51', str(tmp_path / 'out'), workers=1, **TINY)
    found = synthetic.generated_tree(str(tmp_path / 'out'))
    assert found == generated
    assert found.sources == {
        'videos_dir': str(tmp_path / 'out' / 'hmdb51_org'),
        'splits_dir': str(tmp_path / 'out' / 'testTrainMulti_7030_splits'),
    }
    assert synthetic.generated_parameters(str(tmp_path / 'out')) == {
        'dataset': 'hmdb51', **defaults.get_config().data.synthetic.to_dict(), **TINY
    }
    assert synthetic.generated_parameters(str(tmp_path)) is None


def test_ensure_tree_reuses_the_same_tree_and_refuses_one_generated_otherwise(tmp_path):
    output = str(tmp_path / 'out')
    first = synthetic.ensure_tree('ucf101', output, workers=1, **TINY)
    written = os.path.getmtime(os.path.join(output, 'synthetic.json'))
    assert synthetic.ensure_tree('ucf101', output, workers=1, **TINY) == first
    assert os.path.getmtime(os.path.join(output, 'synthetic.json')) == written
    with pytest.raises(ValueError, match=r"generated with .*'num_classes': 2"):
        synthetic.ensure_tree('ucf101', output, **{**TINY, 'num_classes': 3})
    with pytest.raises(ValueError, match=r"generated with \{'dataset': 'ucf101'"):
        synthetic.ensure_tree('hmdb51', output, **TINY)


def test_a_tree_recorded_before_there_were_layouts_reads_as_ucf101(tmp_path):
    (tmp_path / 'synthetic.json').write_text(json.dumps({**TINY, 'seed': 0}))
    found = synthetic.generated_tree(str(tmp_path))
    assert found.dataset == 'ucf101'
    assert found.sources['videos_dir'] == str(tmp_path / 'UCF-101')
    assert synthetic.generated_parameters(str(tmp_path)) == {
        'dataset': 'ucf101', **defaults.get_config().data.synthetic.to_dict(), **TINY
    }


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError('disk full')

    monkeypatch.setattr(synthetic.tree, 'write_text_files', fail)
    with pytest.raises(RuntimeError, match='disk full'):
        synthetic.generate('ucf101', str(tmp_path / 'out'), workers=1, **TINY)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ('arguments', 'message'),
    [
        ({'num_classes': 0}, 'num_classes'),
        ({'num_classes': 1000}, 'num_classes'),
        ({'num_groups': 2}, 'num_groups'),
        ({'clips_per_group': 0}, 'clips_per_group'),
        ({'min_frames': 9, 'max_frames': 8}, 'min_frames'),
        ({'variant': 'flat'}, r"variant must be one of \[''\] for ucf101"),
        ({'missing_fraction': 1.0}, 'missing_fraction'),
        ({'corrupt_videos': -1}, 'corrupt_videos'),
        ({'num_frames': 3}, r"Unknown synthetic parameter\(s\) \['num_frames'\]"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        synthetic.generate('ucf101', str(tmp_path / 'out'), **arguments)


def test_unknown_layouts_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown synthetic dataset 'ucf'; the layouts are"):
        synthetic.generate('ucf', str(tmp_path / 'out'))


def test_refuses_to_write_into_a_non_empty_directory(tmp_path):
    (tmp_path / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        synthetic.generate('ucf101', str(tmp_path), num_classes=1, num_groups=3)
