"""Decoding video files into stored frames: sizes, order, codecs, segments, broken files."""

import io
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from r3d_jax.data import video_decoding
from r3d_jax.data.synthetic import render


def _frames(num_frames, size=(320, 240), seed=0):
    return render.render_frames(render.motion_classes()[0], num_frames, (seed,), size)


def _pyav_frames(path):
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


def _pixels(jpegs):
    return np.stack([np.asarray(Image.open(io.BytesIO(data))) for data in jpegs])


@pytest.fixture(scope='module')
def avi(tmp_path_factory):
    """A 12-frame XviD AVI at 25 fps and its frames as PyAV decodes them."""
    path = str(tmp_path_factory.mktemp('video') / 'v_MoveUp_g01_c01.avi')
    render.write_avi(path, _frames(12))
    return path, _pyav_frames(path)


def test_frame_size_keeps_aspect_with_the_requested_short_side():
    assert video_decoding.frame_size(320, 240, 128) == (171, 128)
    assert video_decoding.frame_size(240, 320, 128) == (128, 171)  # Portrait: width is short.
    assert video_decoding.frame_size(320, 240, 240) == (320, 240)
    assert video_decoding.frame_size(180, 320, 128) == (128, 228)


def test_frames_are_stored_smaller_than_standard_jpeg_with_the_same_pixels(avi):
    _, source = avi
    standard = io.BytesIO()
    Image.fromarray(source[0]).save(standard, format='JPEG', quality=video_decoding.JPEG_QUALITY)
    stored = video_decoding.encode_frame(source[0])
    assert len(stored) < 0.97 * len(standard.getvalue())
    assert np.array_equal(_pixels([stored])[0], _pixels([standard.getvalue()])[0])


def test_jpeg_quality_changes_the_stored_bytes(avi):
    _, source = avi
    low, high = (len(video_decoding.encode_frame(source[0], q)) for q in (50, 95))
    assert low < 0.7 * high


def test_decoded_frames_match_source_frames_in_order(avi):
    path, source = avi
    decoded = video_decoding.decode_video(path, frame_short_side=120)
    assert (decoded.fps, decoded.codec) == (25.0, 'mpeg4')
    frames = _pixels(decoded.frames)
    assert frames.shape == (12, 120, 160, 3)
    expected = np.stack(
        [np.asarray(Image.fromarray(f).resize((160, 120), Image.BICUBIC)) for f in source]
    ).astype(np.float32)
    errors = np.abs(frames[:, None].astype(np.float32) - expected[None]).mean(axis=(2, 3, 4))
    # JPEG (quality 90) on the grainy background plus a different bicubic resampler: ~4 levels.
    assert np.all(np.diag(errors) < 6), np.diag(errors)
    assert np.array_equal(errors.argmin(axis=1), np.arange(12))  # Each frame in its place.


@pytest.mark.parametrize(
    ('codec', 'name', 'size', 'fps'),
    [
        (render.H264_MP4, 'h264', (180, 320), Fraction(30000, 1001)),  # Portrait, NTSC rate.
        (render.VP9_WEBM, 'vp9', (340, 256), Fraction(24)),
    ],
)
def test_any_container_codec_and_rate_is_read_from_the_file(tmp_path, codec, name, size, fps):
    path = str(tmp_path / f'clip.{codec.container}')
    render.write_video(path, _frames(9, size), fps, codec)
    decoded = video_decoding.decode_video(path, frame_short_side=64)
    assert decoded.codec == name
    assert decoded.fps == pytest.approx(float(fps))
    width, height = video_decoding.frame_size(*size, 64)
    assert _pixels(decoded.frames).shape == (9, height, width, 3)


def test_empty_garbage_and_truncated_videos_are_reported(avi, tmp_path):
    path, _ = avi
    empty = tmp_path / 'empty.avi'
    empty.write_bytes(b'')
    garbage = tmp_path / 'garbage.avi'
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    truncated = tmp_path / 'truncated.avi'
    with open(path, 'rb') as source:
        truncated.write_bytes(source.read(os.path.getsize(path) // 2))
    mp4 = str(tmp_path / 'clip.mp4')
    render.write_video(mp4, _frames(20, (160, 120)), 25, render.H264_MP4)
    cut_mp4 = tmp_path / 'cut.mp4'
    cut_mp4.write_bytes(Path(mp4).read_bytes()[: os.path.getsize(mp4) * 3 // 4])
    for bad, reason in ((empty, 'empty file'), (garbage, 'cannot be decoded'),
                        (truncated, 'truncated'), (cut_mp4, 'cannot be decoded')):
        with pytest.raises(video_decoding.VideoDecodeError, match=reason):
            video_decoding.decode_video(str(bad), 128)


def test_a_cut_webm_is_truncated_by_its_declared_duration(tmp_path):
    webm = str(tmp_path / 'clip.webm')
    render.write_video(webm, _frames(75, (160, 120)), 25, render.VP9_WEBM)  # 3 s.
    cut = tmp_path / 'cut.webm'
    cut.write_bytes(Path(webm).read_bytes()[: os.path.getsize(webm) // 3])
    with pytest.raises(video_decoding.VideoDecodeError, match=r'truncated: its frames stop at'):
        video_decoding.decode_video(str(cut), 64)


def test_segment_frames_follow_the_references_one_based_numbering():
    """Worked by hand at 10 fps. The reference keeps 1-based numbers n, image_0000n.jpg, with
    max(1, ceil(start * fps)) <= n < ceil(end * fps); index = n - 1.

    [1.25, 2.0]: ceil(12.5) = 13, ceil(20) = 20 -> numbers 13..19 -> indices 12..18.
    [0.0, 0.45]: ceil(0) = 0 -> 1, ceil(4.5) = 5 -> numbers 1..4 -> indices 0..3.
    [0.1, 0.3]: ceil(1) = 1, ceil(3) = 3 (exactly: 0.1 * 10 is 1, not 1.0000000000000002)
    -> numbers 1, 2 -> indices 0, 1.
    [0.31, 0.32]: ceil(3.1) = 4, ceil(3.2) = 4 -> no frame.
    """
    fps = Fraction(10)
    assert list(video_decoding.segment_frames((1.25, 2.0), fps)) == list(range(12, 19))
    assert list(video_decoding.segment_frames((0.0, 0.45), fps)) == [0, 1, 2, 3]
    assert list(video_decoding.segment_frames((0.1, 0.3), fps)) == [0, 1]
    assert list(video_decoding.segment_frames((0.31, 0.32), fps)) == []
    # 29.97 fps: [1, 2] s -> numbers ceil(29.97) = 30 .. ceil(59.94) - 1 = 59 -> indices 29..58.
    assert video_decoding.segment_frames((1, 2), Fraction(30000, 1001)) == range(29, 59)


def test_segments_hold_their_frames_of_one_decoding(avi):
    path, _ = avi
    whole = video_decoding.decode_video(path, 32)
    # 25 fps: [0.1, 0.3] -> numbers ceil(2.5) = 3 .. ceil(7.5) - 1 = 7 -> indices 2..6.
    first, late, outside = video_decoding.decode_segments(
        path, 32, 90, [(0.1, 0.3), (0.4, 10.0), (5.0, 6.0)]
    )
    assert first.frames == whole.frames[2:7]
    assert late.frames == whole.frames[9:]  # ceil(10) - 1 = 9; the video ends at frame 11.
    assert outside == 'segment [5.0, 6.0] s starts after the end of the video (12 frames at 25 fps)'
