"""UCF-101 as pre-extracted JPEG frames in TFRecords: split files, video tree, TFDS builder.

The official release is a video tree `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` and the split files
`ucfTrainTestlist/{classInd.txt, trainlist0N.txt, testlist0N.txt}`. This module parses and
validates the split files, resolves every listed video to its file, and defines the TFDS builder
`Ucf101Frames`, which writes one example per video: its frames decoded with PyAV, resized so the
short side is `frame_short_side` and JPEG-encoded (in worker processes), plus label and metadata.

Readers use `load_builder`, which needs only the built dataset, never the videos.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import glob
import io
import os
import time
from collections.abc import Iterator, Sequence
from typing import ClassVar

import av
import numpy as np
import tensorflow_datasets as tfds
import tqdm
from av.video.reformatter import VideoReformatter
from PIL import Image

from r3d_jax import processes

DATASET_NAME = 'ucf101_frames'
DATASET_VERSION = '1.0.0'
SPLIT_NUMBERS = (1, 2, 3)
CLASS_INDEX_FILE = 'classInd.txt'
JPEG_QUALITY = 90
SPLITS = ('train', 'test')
BUILD_COMMAND = (
    'python -m r3d_jax.data.build_ucf101 --videos_dir=<path to UCF-101> '
    '--splits_dir=<path to ucfTrainTestlist> --data_dir={data_dir} --split={split_number} '
    '--frame_short_side={frame_short_side}'
)


class SplitFileError(ValueError):
    """A split file (classInd, trainlist, testlist) is missing, malformed or inconsistent."""


class VideoTreeError(FileNotFoundError):
    """The video tree lacks a class folder or a video that a split file names."""


class VideoDecodeError(Exception):
    """A video file is empty, truncated or cannot be decoded."""


class SkippedVideosError(RuntimeError):
    """Videos could not be decoded and the build was not allowed to skip them."""


class DatasetNotBuiltError(FileNotFoundError):
    """No complete build of the requested dataset configuration exists."""


def train_list_file(split_number: int) -> str:
    return f'trainlist0{split_number}.txt'


def test_list_file(split_number: int) -> str:
    return f'testlist0{split_number}.txt'


@dataclasses.dataclass(frozen=True)
class ListedVideo:
    """One line of a train or test list."""

    relative_path: str  # As written: '<Class>/v_<...>.avi'.
    class_name: str  # The folder part: the class, whatever the file name says.
    label: int  # 0-based index in classInd.txt.
    source: str  # '<list file>:<line>', for messages.


@dataclasses.dataclass(frozen=True)
class Video:
    """A listed video resolved to its file."""

    video_id: str  # '<Class>/<file name on disk without extension>'.
    class_name: str
    label: int
    path: str


@dataclasses.dataclass(frozen=True)
class SplitContents:
    """Class names (classInd order) and the videos of each split, in list order."""

    class_names: list[str]
    videos: dict[str, list[Video]]


def _read_lines(path: str, error: type[Exception]) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; tolerates CRLF as in the official files."""
    if not os.path.isfile(path):
        raise error(f'{path}: file not found.')
    with open(path, encoding='utf-8') as f:
        lines = [(number, line.strip()) for number, line in enumerate(f, start=1)]
    return [(number, line) for number, line in lines if line]


def read_class_index(path: str) -> list[str]:
    """Class names in label order from classInd.txt ('1 ApplyEyeMakeup', 1-based, in order)."""
    names: list[str] = []
    for number, line in _read_lines(path, SplitFileError):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise SplitFileError(
                f'{path}:{number}: expected "<index> <ClassName>", got {line!r}.'
            )
        if int(fields[0]) != len(names) + 1:
            raise SplitFileError(
                f'{path}:{number}: expected index {len(names) + 1} (indices are 1-based and '
                f'consecutive), got {fields[0]}.'
            )
        if fields[1] in names:
            raise SplitFileError(f'{path}:{number}: class {fields[1]!r} is listed twice.')
        names.append(fields[1])
    if not names:
        raise SplitFileError(f'{path}: no classes listed.')
    return names


def read_split_list(path: str, class_names: Sequence[str], *, labelled: bool) -> list[ListedVideo]:
    """Videos of a trainlist ('Class/v_x.avi 1', `labelled`) or testlist ('Class/v_x.avi')."""
    labels = {name: label for label, name in enumerate(class_names)}
    listed: list[ListedVideo] = []
    seen: dict[str, int] = {}
    expected = '"<Class>/<file>.avi <label>"' if labelled else '"<Class>/<file>.avi"'
    for number, line in _read_lines(path, SplitFileError):
        fields = line.split()
        parts = fields[0].split('/')
        if len(fields) != (2 if labelled else 1) or len(parts) != 2 or not all(parts):
            raise SplitFileError(f'{path}:{number}: expected {expected}, got {line!r}.')
        class_name = parts[0]
        if class_name not in labels:
            raise SplitFileError(
                f'{path}:{number}: unknown class {class_name!r} (not in {CLASS_INDEX_FILE}).'
            )
        if labelled and fields[1] != str(labels[class_name] + 1):
            raise SplitFileError(
                f'{path}:{number}: label {fields[1]} does not match class {class_name!r}, '
                f'which is {labels[class_name] + 1} in {CLASS_INDEX_FILE}.'
            )
        key = fields[0].lower()
        if key in seen:
            raise SplitFileError(
                f'{path}:{number}: {fields[0]} is already listed on line {seen[key]}.'
            )
        seen[key] = number
        listed.append(
            ListedVideo(
                relative_path=fields[0],
                class_name=class_name,
                label=labels[class_name],
                source=f'{path}:{number}',
            )
        )
    if not listed:
        raise SplitFileError(f'{path}: no videos listed.')
    return listed


def _find_ignoring_case(directory: str, name: str, listing: dict[str, list[str]]) -> str | None:
    """`name` inside `directory`, matched exactly or else case-insensitively (UCF-101 quirk)."""
    if directory not in listing:
        entries = os.listdir(directory) if os.path.isdir(directory) else []
        listing[directory] = entries
    entries = listing[directory]
    if name in entries:
        return name
    matches = [entry for entry in entries if entry.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def resolve_videos(listed: Sequence[ListedVideo], videos_dir: str) -> list[Video]:
    """Each listed video's file; the class comes from the listed folder, never the file name."""
    listing: dict[str, list[str]] = {}
    videos = []
    for entry in listed:
        folder_name, file_name = entry.relative_path.split('/')
        folder = _find_ignoring_case(videos_dir, folder_name, listing)
        if folder is None:
            raise VideoTreeError(
                f'{entry.source}: class folder {os.path.join(videos_dir, folder_name)} not found.'
            )
        found = _find_ignoring_case(os.path.join(videos_dir, folder), file_name, listing)
        if found is None:
            raise VideoTreeError(
                f'{entry.source}: video {os.path.join(videos_dir, folder, file_name)} not found '
                '(file names are matched ignoring case).'
            )
        videos.append(
            Video(
                video_id=f'{entry.class_name}/{os.path.splitext(found)[0]}',
                class_name=entry.class_name,
                label=entry.label,
                path=os.path.join(videos_dir, folder, found),
            )
        )
    return videos


def read_split(videos_dir: str, splits_dir: str, split_number: int) -> SplitContents:
    """Parses and validates one official split and resolves all of its videos to files."""
    if split_number not in SPLIT_NUMBERS:
        raise ValueError(f'split_number must be one of {SPLIT_NUMBERS}, got {split_number}.')
    for directory, what in ((videos_dir, 'videos'), (splits_dir, 'split files')):
        if not os.path.isdir(directory):
            raise VideoTreeError(f'The {what} directory {directory} does not exist.')
    class_names = read_class_index(os.path.join(splits_dir, CLASS_INDEX_FILE))
    train_path = os.path.join(splits_dir, train_list_file(split_number))
    test_path = os.path.join(splits_dir, test_list_file(split_number))
    train = read_split_list(train_path, class_names, labelled=True)
    test = read_split_list(test_path, class_names, labelled=False)
    in_train = {entry.relative_path.lower() for entry in train}
    for entry in test:
        if entry.relative_path.lower() in in_train:
            raise SplitFileError(f'{entry.source}: {entry.relative_path} is also in {train_path}.')
    return SplitContents(
        class_names=class_names,
        videos={
            'train': resolve_videos(train, videos_dir),
            'test': resolve_videos(test, videos_dir),
        },
    )


def frame_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side`, aspect kept: 320x240 -> 171x128."""
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def _check_not_truncated(path: str) -> None:
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


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
    """A video's frames as JPEG bytes, in display order, and its frame rate."""

    frames: list[bytes]
    fps: float


def encode_frame(pixels: np.ndarray) -> bytes:
    """JPEG bytes of uint8 [H, W, 3] pixels at JPEG_QUALITY.

    Huffman tables optimised for the frame: ~7 % fewer bytes to store, read and check, and
    slightly faster to decode, for exactly the pixels of the standard tables.
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='JPEG', quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def decode_video(path: str, frame_short_side: int) -> DecodedVideo:
    """Decodes every frame, resizes (bicubic, as ffmpeg's scale filter) and JPEG-encodes it."""
    _check_not_truncated(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError('no video stream')
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise VideoDecodeError('no frame rate in the container')
            # One reformatter per video keeps its scaling context: creating it per frame (as
            # `frame.to_image(width=...)` does) costs more than decoding and encoding together.
            reformatter = VideoReformatter()
            frames = []
            for frame in container.decode(stream):
                width, height = frame_size(frame.width, frame.height, frame_short_side)
                rgb = reformatter.reformat(
                    frame,
                    width=width,
                    height=height,
                    format='rgb24',
                    interpolation='BICUBIC',
                    threads=1,  # Parallelism comes from worker processes, as for decoding.
                )
                frames.append(encode_frame(rgb.to_ndarray()))
    except (av.FFmpegError, OSError) as error:
        raise VideoDecodeError(f'cannot be decoded: {error}') from error
    if not frames:
        raise VideoDecodeError('no frames could be decoded')
    return DecodedVideo(frames=frames, fps=float(rate))


def _decode_or_reason(path: str, frame_short_side: int) -> DecodedVideo | str:
    """Worker entry point: the decoded video, or why it could not be decoded."""
    try:
        return decode_video(path, frame_short_side)
    except VideoDecodeError as error:
        return str(error)
    except Exception as error:  # A failure this module does not expect: name the video.
        raise RuntimeError(f'Unexpected failure while decoding {path}') from error


def decode_in_order(
    paths: Sequence[str], frame_short_side: int, pool: concurrent.futures.Executor, window: int
) -> Iterator[DecodedVideo | str]:
    """`_decode_or_reason` of each path, computed in `pool`, yielded in order.

    At most `window` videos are in flight, so memory stays bounded however slowly the results
    are consumed.
    """
    pending: collections.deque[tuple[str, concurrent.futures.Future]] = collections.deque()

    def next_result() -> DecodedVideo | str:
        try:
            return pending[0][1].result()
        except concurrent.futures.BrokenExecutor as error:
            in_flight = '\n'.join(f'  {path}' for path, _ in pending)
            raise RuntimeError(
                f'A decoding process died (crashed or was killed) with these videos in '
                f'flight:\n{in_flight}'
            ) from error
        finally:
            pending.popleft()

    for path in paths:
        pending.append((path, pool.submit(_decode_or_reason, path, frame_short_side)))
        if len(pending) >= window:
            yield next_result()
    while pending:
        yield next_result()


@dataclasses.dataclass(frozen=True)
class SkippedVideo:
    split: str
    path: str
    reason: str


def describe_skipped(skipped: Sequence[SkippedVideo]) -> str:
    return '\n'.join(f'  [{s.split}] {s.path}: {s.reason}' for s in skipped)


def config_name(split_number: int, frame_short_side: int) -> str:
    return f'split{split_number}_{frame_short_side}px'


@dataclasses.dataclass(eq=False)
class Ucf101FramesConfig(tfds.core.BuilderConfig):
    """Which official split, and the short side of the stored frames."""

    split_number: int = 1
    frame_short_side: int = 128


def builder_config(split_number: int, frame_short_side: int) -> Ucf101FramesConfig:
    """The predefined config of this (split, size) if there is one, else a new one."""
    if split_number not in SPLIT_NUMBERS:
        raise ValueError(f'split_number must be one of {SPLIT_NUMBERS}, got {split_number}.')
    if not isinstance(frame_short_side, int) or frame_short_side < 1:
        raise ValueError(f'frame_short_side must be a positive integer, got {frame_short_side}.')
    name = config_name(split_number, frame_short_side)
    predefined = {config.name: config for config in Ucf101Frames.BUILDER_CONFIGS}
    return predefined.get(name) or Ucf101FramesConfig(
        name=name, split_number=split_number, frame_short_side=frame_short_side
    )


class Ucf101Frames(tfds.core.GeneratorBasedBuilder):
    """UCF-101, one example per video: JPEG frames, label, class name, id, frame count, fps."""

    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        DATASET_VERSION: 'JPEG frames (quality 90) of each video, short side resized.'
    }
    BUILDER_CONFIGS: ClassVar[list[Ucf101FramesConfig]] = [
        Ucf101FramesConfig(
            name=config_name(split, side),
            description=f'Official split {split}, frames with short side {side} px.',
            split_number=split,
            frame_short_side=side,
        )
        for split in SPLIT_NUMBERS
        for side in (128, 240)
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip from
    https://www.crcv.ucf.edu/data/UCF101.php and extract both: the videos directory `UCF-101/`
    (one folder per class) and the split files directory `ucfTrainTestlist/`. Build with:
    """ + BUILD_COMMAND.format(data_dir='<data_dir>', split_number=1, frame_short_side=128)

    def __init__(
        self,
        *,
        videos_dir: str,
        splits_dir: str,
        workers: int = 0,
        allow_skips: bool = False,
        **kwargs,
    ):
        """Validates the split files and finds every video before anything is written."""
        config = kwargs.get('config')
        if not isinstance(config, Ucf101FramesConfig):
            raise ValueError('Pass config=builder_config(split_number, frame_short_side).')
        self._contents = read_split(videos_dir, splits_dir, config.split_number)
        self._workers = min(
            workers or os.cpu_count() or 1, max(len(v) for v in self._contents.videos.values())
        )
        self._pool: concurrent.futures.Executor | None = None
        self._allow_skips = allow_skips
        self.skipped: list[SkippedVideo] = []
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    'frames': tfds.features.Sequence(
                        tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg')
                    ),
                    'label': tfds.features.ClassLabel(names=self._contents.class_names),
                    'class_name': tfds.features.Text(),
                    'video_id': tfds.features.Text(),
                    'num_frames': tfds.features.Scalar(dtype=np.int32),
                    'fps': tfds.features.Scalar(dtype=np.float32),
                }
            ),
            homepage='https://www.crcv.ucf.edu/data/UCF101.php',
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        videos = self._contents.videos[split]
        results = decode_in_order(
            [video.path for video in videos],
            self.builder_config.frame_short_side,
            self._pool,
            window=2 * self._workers,
        )
        frames_done, start, written = 0, time.monotonic(), 0
        with tqdm.tqdm(total=len(videos), desc=f'{split} videos', unit='video') as progress:
            for video, result in zip(videos, results, strict=True):
                progress.update()
                if isinstance(result, str):
                    self.skipped.append(SkippedVideo(split=split, path=video.path, reason=result))
                    tqdm.tqdm.write(f'Skipping {video.path}: {result}')
                    continue
                frames_done += len(result.frames)
                progress.set_postfix(frames_per_s=f'{frames_done / (time.monotonic() - start):.0f}')
                written += 1
                yield video.video_id, {
                    'frames': result.frames,
                    'label': video.label,
                    'class_name': video.class_name,
                    'video_id': video.video_id,
                    'num_frames': len(result.frames),
                    'fps': result.fps,
                }
        if not written:
            skipped = [s for s in self.skipped if s.split == split]
            raise SkippedVideosError(
                f'No video of the {split} split could be decoded:\n{describe_skipped(skipped)}'
            )

    def _download_and_prepare(
        self,
        dl_manager: tfds.download.DownloadManager,
        download_config: tfds.download.DownloadConfig,
    ) -> None:
        """Writes the splits, then checks them while TFDS still holds them in its staging dir.

        TFDS renames its `incomplete.*` directory to the dataset directory only after this
        returns, so raising here leaves nothing that loads as a complete dataset.
        """
        # One pool of decoding processes serves both splits; they end with this process.
        with processes.worker_pool(self._workers) as pool:
            self._pool = pool
            super()._download_and_prepare(dl_manager, download_config)
        if self.skipped and not self._allow_skips:
            raise SkippedVideosError(
                f'{len(self.skipped)} video(s) could not be decoded, so nothing was kept '
                f'(allow skips to build without them):\n{describe_skipped(self.skipped)}'
            )
        for split in SPLITS:
            listed = len(self._contents.videos[split])
            skipped = sum(s.split == split for s in self.skipped)
            written = self.info.splits[split].num_examples
            if written != listed - skipped:
                raise RuntimeError(
                    f'The {split} split has {written} examples, but its list names {listed} '
                    f'videos of which {skipped} were skipped.'
                )
        self.info.metadata['skipped_videos'] = [dataclasses.asdict(s) for s in self.skipped]


def dataset_dir(data_dir: str, split_number: int, frame_short_side: int) -> str:
    """Where a complete build of this configuration lives."""
    name = config_name(split_number, frame_short_side)
    return os.path.join(os.path.abspath(data_dir), DATASET_NAME, name, DATASET_VERSION)


def interrupted_builds(directory: str) -> list[str]:
    """Staging directories that TFDS left beside `directory` when a build was killed."""
    parent, version = os.path.split(directory)
    return sorted(glob.glob(os.path.join(parent, f'incomplete.*_{version}')))


def is_built(directory: str) -> bool:
    """TFDS writes dataset_info.json last and then renames the directory into place."""
    return os.path.isfile(os.path.join(directory, 'dataset_info.json'))


def not_built_message(data_dir: str, split_number: int, frame_short_side: int) -> str:
    directory = dataset_dir(data_dir, split_number, frame_short_side)
    message = f'No complete UCF-101 frames dataset at {directory}.'
    leftovers = interrupted_builds(directory)
    if leftovers:
        message += f' An interrupted build left {", ".join(leftovers)}; rerun the build.'
    command = BUILD_COMMAND.format(
        data_dir=data_dir, split_number=split_number, frame_short_side=frame_short_side
    )
    return (
        f'{message}\nBuild it with:\n  {command}\n'
        "or set config.data.if_missing='synthetic' to generate and build the synthetic stand-in."
    )


def load_builder(
    data_dir: str, split_number: int, frame_short_side: int
) -> tfds.core.DatasetBuilder:
    """The TFDS builder of a complete build, read from its directory (no videos needed)."""
    directory = dataset_dir(data_dir, split_number, frame_short_side)
    if not is_built(directory):
        raise DatasetNotBuiltError(not_built_message(data_dir, split_number, frame_short_side))
    builder = tfds.builder_from_directory(directory)
    missing = [split for split in SPLITS if split not in builder.info.splits]
    if missing:
        raise DatasetNotBuiltError(f'{directory} has no {" or ".join(missing)} split.')
    return builder
