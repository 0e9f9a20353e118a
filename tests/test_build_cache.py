"""The resumable decode phase: chunk names, chunk files, reuse, and worker crashes contained."""

import os
import signal

import pytest

from r3d_jax.data import build_cache
from r3d_jax.data.build_cache import Decoding, Outcome, WorkerDied
from r3d_jax.data.layouts import DatasetContents, VideoEntry
from r3d_jax.data.synthetic import render

DECODING = Decoding(frame_short_side=32, jpeg_quality=90)


def square_unless_three(x):
    """A worker's job that kills its own process on one input, as a crashing decoder would."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_a_job_that_kills_its_worker_is_recorded_and_the_others_finish():
    results = list(build_cache.run_in_order(range(9), square_unless_three, workers=2))
    assert results[:3] == [0, 1, 4]
    assert isinstance(results[3], WorkerDied)
    assert results[4:] == [x * x for x in range(4, 9)]


def _entry(path, video_id, segment=None, label=0):
    return VideoEntry(video_id=video_id, class_name='walk', label=label, path=path,
                      source=f'list.txt:{video_id}', segment=segment)


def test_segments_of_one_file_are_decoded_as_one_job():
    entries = [_entry('a.mp4', 'a/0', (0, 1)), _entry('a.mp4', 'a/1', (2, 3)),
               _entry('b.mp4', 'b'), _entry('', 'gone'), _entry('', 'gone too')]
    jobs = build_cache.file_jobs(entries)
    assert [[e.video_id for e in job] for job in jobs] == [['a/0', 'a/1'], ['b'], ['gone'],
                                                          ['gone too']]


@pytest.fixture
def tree(tmp_path):
    """Five 4-frame AVIs listed for training, one listed file missing."""
    paths = []
    for i in range(5):
        path = str(tmp_path / f'v{i}.avi')
        render.write_avi(path, render.render_frames(render.motion_classes()[0], 4, (i,)))
        paths.append(path)
    entries = [_entry(path, f'walk/v{i}') for i, path in enumerate(paths)]
    entries.append(VideoEntry('walk/gone', 'walk', 0, '', 'list.txt:6', missing='no file'))
    cache_dir = tmp_path / 'cache'
    cache_dir.mkdir()
    return DatasetContents(['walk'], {'train': entries}), str(cache_dir)


def _names(plan):
    return [os.path.basename(chunk.path) for chunk in plan['train']]


def test_chunk_names_change_with_every_parameter_of_their_contents(tree):
    contents, cache_dir = tree
    plan = build_cache.plan_chunks(contents, DECODING, cache_dir, chunk_size=2)
    assert [len(chunk.jobs) for chunk in plan['train']] == [2, 2, 2]
    assert _names(plan) == _names(build_cache.plan_chunks(contents, DECODING, cache_dir, 2))
    for decoding in (Decoding(64, 90), Decoding(32, 80)):
        assert set(_names(plan)).isdisjoint(
            _names(build_cache.plan_chunks(contents, decoding, cache_dir, 2))
        )
    first_video = contents.splits['train'][0].path
    with open(first_video, 'ab') as f:
        f.write(b'\0')  # Another file: its chunk only is decoded again.
    changed = _names(build_cache.plan_chunks(contents, DECODING, cache_dir, 2))
    assert changed[0] != _names(plan)[0] and changed[1:] == _names(plan)[1:]


def test_chunks_hold_examples_and_every_entrys_outcome(tree):
    contents, cache_dir = tree
    plan = build_cache.plan_chunks(contents, DECODING, cache_dir, chunk_size=4)
    build_cache.fill(plan, DECODING, workers=2)
    assert all(chunk.is_complete() for chunk in plan['train'])
    assert sorted(os.listdir(cache_dir)) == sorted(_names(plan))  # No temporary file left.
    examples = [e for chunk in plan['train'] for e in build_cache.read_examples(chunk.path)]
    assert [e['video_id'] for e in examples] == [f'walk/v{i}' for i in range(5)]
    assert all(e['num_frames'] == len(e['frames']) == 4 and e['fps'] == 25 for e in examples)
    outcomes = [o for chunk in plan['train'] for o in build_cache.read_outcomes(chunk.path)]
    assert outcomes[-1] == Outcome('train', 'walk/gone', '', 'list.txt:6',
                                   reason='missing: no file', missing=True)
    assert [(o.codec, o.num_frames) for o in outcomes[:5]] == [('mpeg4', 4)] * 5


def test_a_rerun_decodes_only_the_chunks_not_complete(tree, capsys):
    contents, cache_dir = tree
    plan = build_cache.plan_chunks(contents, DECODING, cache_dir, chunk_size=2)
    build_cache.fill(plan, DECODING, workers=1)
    kept = plan['train'][0].path
    written = os.path.getmtime(kept)
    os.remove(plan['train'][1].path)
    open(os.path.join(cache_dir, 'train-000001-0123456789abcdef.chunk.tmp123'), 'w').close()
    build_cache.remove_stale_files(cache_dir, plan)
    build_cache.fill(plan, DECODING, workers=1)
    assert 'train: reusing 2 of 3 decoded chunks (4 of 6 videos)' in capsys.readouterr().err
    assert os.path.getmtime(kept) == written
    assert sorted(os.listdir(cache_dir)) == sorted(_names(plan))


def test_an_unreadable_chunk_is_named(tree):
    contents, cache_dir = tree
    plan = build_cache.plan_chunks(contents, DECODING, cache_dir, chunk_size=6)
    build_cache.fill(plan, DECODING, workers=1)
    path = plan['train'][0].path
    with open(path, 'r+b') as f:
        f.truncate(100)
    with pytest.raises(build_cache.ChunkError, match=r'unreadable chunk .*delete it and rerun'):
        list(build_cache.read_examples(path))
    with pytest.raises(build_cache.ChunkError, match='unreadable chunk'):
        build_cache.read_outcomes(path)
