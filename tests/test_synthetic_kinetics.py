"""The synthetic Kinetics: CSVs, clip names and folders, missing and corrupt clips, codecs."""

import csv
import math
import os
import re

import av
import pytest

from r3d_jax.data import synthetic
from r3d_jax.data.synthetic import kinetics

TINY = {'num_classes': 3, 'num_groups': 4, 'clips_per_group': 2, 'min_frames': 3,
        'max_frames': 5, 'missing_fraction': 0.1}
LABELS = ['move up', 'handstand pushups', "move sideways (someone's, in game)"]


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    return synthetic.generate(
        'kinetics', str(tmp_path_factory.mktemp('synthetic') / 'kinetics'), workers=2, **TINY
    )


def _rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _clips(videos_dir):
    return sorted(
        os.path.relpath(os.path.join(folder, name), videos_dir)
        for folder, _, names in os.walk(videos_dir)
        for name in names
    )


def _open(path):
    """(format, codec, width, height, fps, frames), or None if the file does not decode."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            return (container.format.name, stream.codec_context.name, stream.width,
                    stream.height, stream.average_rate, frames)
    except av.error.InvalidDataError:
        return None


def test_csvs_have_kinetics_headers_and_rows(tree):
    assert tree.sources == {
        'videos_dir': os.path.join(tree.root, 'videos'),
        'train_csv': os.path.join(tree.root, 'annotations', 'train.csv'),
        'val_csv': os.path.join(tree.root, 'annotations', 'validate.csv'),
    }
    with open(tree.sources['train_csv']) as f:
        assert f.readline() == 'label,youtube_id,time_start,time_end,split,is_cc\n'
    with open(tree.sources['val_csv']) as f:
        assert f.readline() == 'label,youtube_id,time_start,time_end,split\n'
    with open(tree.sources['train_csv']) as f:
        assert '"move sideways (someone\'s, in game)",' in f.read()  # Quoted: it holds a comma.
    train, val = _rows(tree.sources['train_csv']), _rows(tree.sources['val_csv'])
    # Per class: 4 groups of 2 clips, group 1 (round(4 * 7 / 25) = 1 group) for validation.
    assert (len(train), len(val)) == (3 * 6, 3 * 2)
    assert {row['split'] for row in train} == {'train'} and {row['split'] for row in val} == {'val'}
    assert sorted({row['label'] for row in train}) == sorted(LABELS)
    assert {row['is_cc'] for row in train} == {'0', '1'}
    ids = [row['youtube_id'] for row in train + val]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r'[A-Za-z0-9_-]{11}', video_id) for video_id in ids)
    assert any(video_id.startswith('-') for video_id in ids)
    for row in train + val:
        assert row['time_start'].isdigit() and int(row['time_end']) > int(row['time_start'])


def test_clips_are_named_by_id_and_seconds_in_label_folders_some_missing(tree):
    rows = _rows(tree.sources['train_csv']) + _rows(tree.sources['val_csv'])
    listed = {
        f"{row['label']}/{row['youtube_id']}_{int(row['time_start']):06d}_"
        f"{int(row['time_end']):06d}"
        for row in rows
    }
    clips = _clips(tree.sources['videos_dir'])
    assert {os.path.splitext(clip)[0] for clip in clips} <= listed
    assert len(listed) - len(clips) == math.ceil(0.1 * len(rows)) == 3
    assert sorted({os.path.splitext(clip)[1] for clip in clips}) == ['.mp4', '.webm']


def test_clips_are_h264_of_mixed_sizes_and_rates_one_webm_one_corrupt(tree):
    opened = {
        clip: _open(os.path.join(tree.sources['videos_dir'], clip))
        for clip in _clips(tree.sources['videos_dir'])
    }
    corrupt = [clip for clip, found in opened.items() if found is None]
    assert len(corrupt) == 1 and corrupt[0].endswith('.mp4')
    decoded = [found for found in opened.values() if found is not None]
    assert {(name, codec) for name, codec, *_ in decoded} == {
        ('mov,mp4,m4a,3gp,3g2,mj2', 'h264'), ('matroska,webm', 'vp9')
    }
    formats = {(width, height, fps) for _, _, width, height, fps, _ in decoded}
    assert formats == set(kinetics.FORMATS)
    assert any(height > width for width, height, _ in formats)
    lengths = [frames for *_, frames in decoded]
    assert TINY['min_frames'] <= min(lengths) and max(lengths) <= TINY['max_frames']


@pytest.mark.parametrize(
    ('variant', 'folders'),
    [('underscore_folders', {'move_up', 'handstand_pushups', "move_sideways_(someone's,_in_game)"}),
     ('flat', set())],
)
def test_label_folders_spell_spaces_as_underscores_or_are_left_out(tmp_path, variant, folders):
    tree = synthetic.generate(
        'kinetics', str(tmp_path / 'kinetics'), workers=1, variant=variant,
        **{**TINY, 'clips_per_group': 1, 'max_frames': 3},
    )
    clips = _clips(tree.sources['videos_dir'])
    assert {os.path.dirname(clip) for clip in clips} - {''} == folders
    assert all(re.fullmatch(r'[A-Za-z0-9_-]{11}_\d{6}_\d{6}\.(mp4|webm)', os.path.basename(c))
               for c in clips)


def test_too_few_clips_for_the_damage_asked_for_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r'raise num_groups or clips_per_group'):
        synthetic.generate('kinetics', str(tmp_path / 'k'), num_classes=1, num_groups=3,
                           clips_per_group=1, corrupt_videos=2)


def test_the_benchmark_tree_holds_10_second_clips_at_30_fps_in_two_sizes(tmp_path):
    tree = synthetic.generate_kinetics_benchmark(str(tmp_path / 'bench'), 2, workers=1)
    clips = _clips(tree.sources['videos_dir'])
    train, val = _rows(tree.sources['train_csv']), _rows(tree.sources['val_csv'])
    assert len(clips) == 2 and (len(train), len(val)) == (1, 1)
    assert {row['label'] for row in val} <= {row['label'] for row in train}
    found = sorted(_open(os.path.join(tree.sources['videos_dir'], clip)) for clip in clips)
    assert [(w, h, fps, n) for _, codec, w, h, fps, n in found if codec == 'h264'] == [
        (340, 256, 30, 300), (640, 360, 30, 300)
    ]
