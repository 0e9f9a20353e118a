"""The Kinetics layout: annotation CSVs matched to clip files by name, in any folder layout."""

import os

import pytest

from r3d_jax import defaults
from r3d_jax.data.layouts import SourceError, kinetics

HEADER = 'label,youtube_id,time_start,time_end,split'
LABELS = ['abseiling', 'passing American football (in game)', "tying bow tie's"]
TRAIN_ROWS = [
    ('abseiling', '-0AbCdEfGhI', 10, 20),  # Ids may start with '-'.
    ('passing American football (in game)', 'xYz_0123456', 0, 10),
    ("tying bow tie's", '--abcdefghi', 7, 17),
    ('abseiling', 'missingClip1', 30, 40),  # Listed, never downloaded.
]
VAL_ROWS = [('passing American football (in game)', 'valClip0001', 100, 110)]


def _csv(path, rows, header=HEADER, extra=''):
    with open(path, 'w') as f:
        f.write(header + '\n')
        for label, youtube_id, start, end in rows:
            quoted = f'"{label}"' if ' ' in label else label
            f.write(f'{quoted},{youtube_id},{start},{end},train{extra}\n')
    return str(path)


def _stem(youtube_id, start, end):
    return f'{youtube_id}_{start:06d}_{end:06d}'


def _tree(root, folders, train_name='train.csv', val_name='validate.csv', header=HEADER):
    """Clips as 'labels' (per-label folders), 'underscores' (spaces as '_') or 'flat'."""
    videos_dir = os.path.join(root, 'videos')
    for label, youtube_id, start, end in TRAIN_ROWS[:3] + VAL_ROWS:
        folder = {'labels': label, 'underscores': label.replace(' ', '_'), 'flat': ''}[folders]
        os.makedirs(os.path.join(videos_dir, folder), exist_ok=True)
        extension = '.webm' if youtube_id.startswith('--') else '.mp4'
        path = os.path.join(videos_dir, folder, _stem(youtube_id, start, end) + extension)
        open(path, 'w').close()
    extra = ',0' if header.endswith('is_cc') else ''
    return {
        'videos_dir': videos_dir,
        'train_csv': _csv(os.path.join(root, train_name), TRAIN_ROWS, header, extra),
        'val_csv': _csv(os.path.join(root, val_name), VAL_ROWS, header, extra),
    }


def _read(sources, version=400):
    data = defaults.get_config().data
    data.dataset, data.kinetics_version = 'kinetics', version
    return kinetics.read_contents(sources, data)


@pytest.mark.parametrize('folders', ['labels', 'underscores', 'flat'])
@pytest.mark.parametrize(
    ('train_name', 'val_name', 'header'),
    [('train.csv', 'val.csv', HEADER),  # CVDF's annotations/.
     ('kinetics_train.csv', 'kinetics_val.csv', HEADER + ',is_cc'),  # The ActivityNet crawler.
     ('kinetics-600_train.csv', 'validate.csv', HEADER)],
)
def test_clips_are_found_in_any_folder_layout_under_any_csv_name(
    tmp_path, folders, train_name, val_name, header
):
    sources = _tree(str(tmp_path), folders, train_name, val_name, header)
    contents = _read(sources)
    assert contents.class_names == sorted(LABELS)
    train = contents.splits['train']
    assert [e.video_id for e in train] == [_stem(*row[1:]) for row in TRAIN_ROWS]
    assert [e.class_name for e in train] == [row[0] for row in TRAIN_ROWS]
    assert [e.label for e in train] == [sorted(LABELS).index(row[0]) for row in TRAIN_ROWS]
    assert all(os.path.isfile(e.path) and not e.missing for e in train[:3])
    assert train[2].path.endswith('.webm')
    assert train[3].path == '' and train[3].missing.startswith('no file missingClip1_000030_')
    (val,) = contents.splits['validation']
    assert (val.video_id, val.label) == ('valClip0001_000100_000110', 1)
    assert train[1].source.endswith(f'{train_name}:3')


def _sources_with(tmp_path, train_text=None, val_text=None):
    sources = _tree(str(tmp_path), 'flat')
    for key, text in (('train_csv', train_text), ('val_csv', val_text)):
        if text is not None:
            with open(sources[key], 'w') as f:
                f.write(text)
    return sources


@pytest.mark.parametrize(
    ('train_text', 'val_text', 'message'),
    [
        ('label,youtube_id,start,end,split\n', None,
         r'train\.csv:1: expected the header "label,youtube_id,time_start,time_end,split"'),
        (f'{HEADER}\nabseiling,abc,1.5,11,train\n', None,
         r"train\.csv:2: time_start must be a whole number of seconds, got '1\.5'"),
        (f'{HEADER}\nabseiling,abc,1,ten,train\n', None,
         r"train\.csv:2: time_end must be a whole number of seconds, got 'ten'"),
        (f'{HEADER}\nabseiling,abc,1,11\n', None, r'train\.csv:2: expected 5 fields, got 4'),
        (f'{HEADER}\nabseiling,abc,1,11,train\nabseiling,abc,1,11,train\n', None,
         r'train\.csv:3: clip abc_000001_000011 is already listed on line 2'),
        (None, f'{HEADER}\nskydiving,abc,1,11,val\n',
         r"validate\.csv:2: label 'skydiving' is not among the 3 labels of .*train\.csv"),
        (None, f'{HEADER}\nabseiling,-0AbCdEfGhI,10,20,val\n',
         r'validate\.csv:2: -0AbCdEfGhI_000010_000020 is also in the train split, listed at '
         r'.*train\.csv:2'),
        (None, f'{HEADER}\n', r'validate\.csv: no clips listed'),
    ],
)
def test_bad_csvs_name_file_and_line(tmp_path, train_text, val_text, message):
    with pytest.raises(SourceError, match=message):
        _read(_sources_with(tmp_path, train_text, val_text))


def test_the_version_is_part_of_the_identity():
    data = defaults.get_config().data
    data.dataset = 'kinetics'
    for version in (400, 600, 700):
        data.kinetics_version = version
        assert kinetics.LAYOUT.identity(data) == f'k{version}'
    data.kinetics_version = 500
    with pytest.raises(ValueError, match=r'kinetics_version \(--kinetics_version\) must be one'):
        kinetics.LAYOUT.identity(data)
