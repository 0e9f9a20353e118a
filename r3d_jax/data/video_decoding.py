"""Video files to stored frames: decode with PyAV, resize the short side, encode as JPEG.

Every dataset layout stores its videos this way, and prediction decodes a file the same way, so
a model sees at test time exactly what it was trained on. Any container and codec FFmpeg reads
works; the frame rate and the codec are read from the file, never assumed.

This module is what decoding worker processes import: it stays light (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

JPEG_QUALITY = 90  # The default quality of stored frames (libjpeg's scale, 1-95).
# A container that declares a duration, from a file whose frames stop earlier than this before
# its end, is truncated: decoders of Matroska/WebM stop silently at the cut.
TRUNCATION_TOLERANCE_SECONDS = 1.0


class VideoDecodeError(Exception):
    """A video file is empty, truncated or cannot be decoded."""


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
    """The stored form of a video (or of a segment of one): JPEG frames in display order."""

    frames: list[bytes]
    fps: float  # The stream's frame rate, from the container.
    codec: str  # FFmpeg's name of the stream's codec: 'mpeg4', 'h264', 'vp9'...


def frame_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side`, aspect kept: 320x240 -> 171x128.

    A portrait video keeps its orientation: 180x320 -> 128x228.
    """
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def encode_frame(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of uint8 [H, W, 3] pixels.

    Huffman tables optimised for the frame: ~7 % fewer bytes to store, read and check, and
    slightly faster to decode, for exactly the pixels of the standard tables.
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='JPEG', quality=quality, optimize=True)
    return buffer.getvalue()


def segment_frames(segment: tuple[float, float], fps: Fraction) -> range:
    """0-based indices of the frames of a time segment (seconds), by the reference's rule.

    The reference (3D-ResNets-PyTorch, `datasets/activitynet.py`) numbers a video's extracted
    frames from 1 (`image_00001.jpg` is the first) and keeps the numbers n with
    max(1, ceil(start * fps)) <= n < ceil(end * fps); number n is index n - 1 here. At 10 fps,
    [1.25, 2.0] s keeps numbers 13..19, indices 12..18; [0.0, 0.45] s numbers 1..4, indices
    0..3. Products are exact (the decimal written in the annotation times the rational frame
    rate), where the reference's float product can land a hair above an integer.
    """
    start = max(1, math.ceil(Fraction(str(segment[0])) * fps))
    end = math.ceil(Fraction(str(segment[1])) * fps)
    return range(start - 1, max(start, end) - 1)


def check_not_truncated(path: str) -> None:
    """An AVI file must be as long as its RIFF header says; decoders silently stop early."""
    size = os.path.getsize(path)
    if size == 0:
        raise VideoDecodeError('empty file (0 bytes)')
    with open(path, 'rb') as f:
        header = f.read(12)
    if header[:4] == b'RIFF' and header[8:12] == b'AVI ':
        declared = int.from_bytes(header[4:8], 'little') + 8
        if size < declared:
            raise VideoDecodeError(
                f'truncated: {size} bytes of the {declared} its AVI header declares'
            )


def _declared_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """How long the file says its video lasts, or 0 where it does not say it for the video."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / av.time_base
    return 0.0  # Only the whole file's duration, which other streams (audio) may set.


def decode_segments(
    path: str,
    frame_short_side: int,
    jpeg_quality: int,
    segments: Sequence[tuple[float, float] | None],
) -> list[DecodedVideo | str]:
    """Each segment's frames (None: the whole video), or why the segment holds none.

    The file is decoded once; only frames inside some segment are resized (bicubic, as ffmpeg's
    scale filter) and encoded. Raises VideoDecodeError when the file itself cannot be read.
    """
    check_not_truncated(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError('no video stream')
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # Parallelism comes from worker processes.
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise VideoDecodeError('no frame rate in the container')
            rate = Fraction(rate)
            ranges = [None if s is None else segment_frames(s, rate) for s in segments]
            last_wanted = max(
                (math.inf if r is None else r.stop for r in ranges), default=0
            )
            # One reformatter per video keeps its scaling context: creating it per frame (as
            # `frame.to_image(width=...)` does) costs more than decoding and encoding together.
            reformatter = VideoReformatter()
            kept: list[list[bytes]] = [[] for _ in segments]
            index, end_seconds = -1, 0.0
            for index, frame in enumerate(container.decode(stream)):
                if index >= last_wanted:
                    break
                if frame.time is not None:
                    end_seconds = frame.time + 1 / float(rate)
                wanted = [k for k, r in enumerate(ranges) if r is None or index in r]
                if not wanted:
                    continue
                width, height = frame_size(frame.width, frame.height, frame_short_side)
                rgb = reformatter.reformat(
                    frame,
                    width=width,
                    height=height,
                    format='rgb24',
                    interpolation='BICUBIC',
                    threads=1,
                )
                encoded = encode_frame(rgb.to_ndarray(), jpeg_quality)
                for k in wanted:
                    kept[k].append(encoded)
            num_frames = index + 1
            declared = _declared_seconds(container, stream)
            codec = stream.codec_context.name
    except (av.FFmpegError, OSError) as error:
        raise VideoDecodeError(f'cannot be decoded: {error}') from error
    if num_frames == 0:
        raise VideoDecodeError('no frames could be decoded')
    if index < last_wanted and declared - end_seconds > TRUNCATION_TOLERANCE_SECONDS:
        raise VideoDecodeError(
            f'truncated: its frames stop at {end_seconds:.2f} s of the {declared:.2f} s its '
            'container declares'
        )
    results: list[DecodedVideo | str] = []
    for segment, frames, wanted in zip(segments, kept, ranges, strict=True):
        if frames:
            results.append(DecodedVideo(frames=frames, fps=float(rate), codec=codec))
        elif wanted is not None and not wanted:
            results.append(f'segment [{segment[0]}, {segment[1]}] s is shorter than a frame at '
                           f'{float(rate):g} fps')
        else:  # Its frames would lie after the last one, so the whole video was decoded.
            results.append(f'segment [{segment[0]}, {segment[1]}] s starts after the end of the '
                           f'video ({num_frames} frames at {float(rate):g} fps)')
    return results


def decode_video(
    path: str, frame_short_side: int, jpeg_quality: int = JPEG_QUALITY
) -> DecodedVideo:
    """Every frame of the video at `path`, resized and JPEG-encoded as the datasets store it."""
    (decoded,) = decode_segments(path, frame_short_side, jpeg_quality, [None])
    assert isinstance(decoded, DecodedVideo)  # A whole video with a frame always has frames.
    return decoded
