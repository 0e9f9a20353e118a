"""The HMDB-51 layout: per-class split files with 0/1/2 ids, resolved to the videos on disk."""

import os
import re

import pytest

from r3d_jax import defaults
from r3d_jax.data.layouts import SourceError, hmdb51

# HMDB-51 names files after their source film, with brackets, '&', ';' and "'".
VIDEOS = {
    'brush_hair': [
        'April_09_brush_hair_u_nm_np1_ba_goo_0.avi',
        "Hamlet_(1996)_brush_hair_f_nm_np1_ba_goo_1.avi",
        "Bob's_[Best]_&_Co;_brush_hair_u_cm_np1_fr_med_2.avi",
        'Prelinger_brush_hair_h_nm_np1_le_goo_3.avi',
    ],
    'cartwheel': [
        'Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_0.avi',
        'Bodenturnen_2004_cartwheel_f_cm_np1_le_med_1.avi',
        "Cartwheel_(My_Sister's)_cartwheel_f_cm_np1_ri_med_2.avi",
    ],
}
# Per split and class: the id of each video above (1 train, 2 test, 0 unused).
IDS = {
    1: {'brush_hair': [1, 2, 1, 0], 'cartwheel': [2, 1, 1]},
    2: {'brush_hair': [2, 1, 0, 1], 'cartwheel': [1, 2, 1]},
    3: {'brush_hair': [0, 1, 2, 1], 'cartwheel': [1, 1, 2]},
}


def _tree(root, ids=IDS):
    videos_dir = os.path.join(root, 'hmdb51_org')
    splits_dir = os.path.join(root, 'testTrainMulti_7030_splits')
    os.makedirs(splits_dir)
    for class_name, names in VIDEOS.items():
        os.makedirs(os.path.join(videos_dir, class_name))
        for name in names:
            open(os.path.join(videos_dir, class_name, name), 'w').close()
        for split, by_class in ids.items():
            with open(os.path.join(splits_dir, f'{class_name}_test_split{split}.txt'), 'w') as f:
                # The real files end every line with a space.
                ids_ = zip(names, by_class[class_name], strict=True)
                f.writelines(f'{name} {i} \n' for name, i in ids_)
    return {'videos_dir': videos_dir, 'splits_dir': splits_dir}


def _read(sources, split_number):
    data = defaults.get_config().data
    data.dataset, data.split_number = 'hmdb51', split_number
    return hmdb51.read_contents(sources, data)


@pytest.mark.parametrize('split_number', [1, 2, 3])
def test_each_split_holds_the_train_and_test_ids_and_never_the_unused(tmp_path, split_number):
    sources = _tree(str(tmp_path))
    contents = _read(sources, split_number)
    assert contents.class_names == ['brush_hair', 'cartwheel']  # Sorted names are the labels.
    for split, wanted_id in (('train', 1), ('test', 2)):
        expected = [
            (f'{class_name}/{os.path.splitext(name)[0]}', label)
            for label, class_name in enumerate(contents.class_names)
            for name, i in zip(VIDEOS[class_name], IDS[split_number][class_name], strict=True)
            if i == wanted_id
        ]
        entries = contents.splits[split]
        assert [(e.video_id, e.label) for e in entries] == expected
        assert all(os.path.isfile(e.path) for e in entries)


def test_odd_file_names_are_taken_literally(tmp_path):
    contents = _read(_tree(str(tmp_path)), 1)
    ids = [e.video_id for e in contents.splits['test']]
    assert "brush_hair/Hamlet_(1996)_brush_hair_f_nm_np1_ba_goo_1" in ids
    train = {e.video_id: e for e in contents.splits['train']}
    odd = train["brush_hair/Bob's_[Best]_&_Co;_brush_hair_u_cm_np1_fr_med_2"]
    assert odd.path.endswith("Bob's_[Best]_&_Co;_brush_hair_u_cm_np1_fr_med_2.avi")
    assert re.search(r'brush_hair_test_split1\.txt:3$', odd.source)


def _rewrite(sources, name, text):
    with open(os.path.join(sources['splits_dir'], name), 'w') as f:
        f.write(text)


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('April_09_brush_hair_u_nm_np1_ba_goo_0.avi 3\n',
         r'brush_hair_test_split1\.txt:1: expected "<video file name> <id>" with id 1'),
        ('April_09_brush_hair_u_nm_np1_ba_goo_0.avi\n',
         r'brush_hair_test_split1\.txt:1: expected'),
        ('April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1\nGone_brush_hair_0.avi 2\n',
         r'brush_hair_test_split1\.txt:2: video .*brush_hair/Gone_brush_hair_0\.avi not found'),
        ('April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1\n'
         'April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2\n',
         r'brush_hair_test_split1\.txt:2: .* already listed on line 1'),
        ('April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1\n',
         r'brush_hair_test_split1\.txt: no test video \(id 2\) listed'),
    ],
)
def test_bad_split_file_names_file_and_line(tmp_path, text, message):
    sources = _tree(str(tmp_path))
    _rewrite(sources, 'brush_hair_test_split1.txt', text)
    with pytest.raises(SourceError, match=message):
        _read(sources, 1)


def test_a_class_without_its_split_file_or_folder_is_named(tmp_path):
    sources = _tree(str(tmp_path))
    os.remove(os.path.join(sources['splits_dir'], 'cartwheel_test_split2.txt'))
    with pytest.raises(SourceError, match=r'cartwheel_test_split2\.txt not found, though split 1'):
        _read(sources, 2)
    os.rename(os.path.join(sources['videos_dir'], 'cartwheel'),
              os.path.join(sources['videos_dir'], 'elsewhere'))
    with pytest.raises(SourceError, match=r'cartwheel_test_split1\.txt: the class folder '):
        _read(sources, 1)


def test_no_split_files_at_all_is_explained(tmp_path):
    os.makedirs(tmp_path / 'videos')
    os.makedirs(tmp_path / 'splits')
    with pytest.raises(SourceError, match=r'no <class>_test_split1\.txt files'):
        _read({'videos_dir': str(tmp_path / 'videos'), 'splits_dir': str(tmp_path / 'splits')}, 1)
