"""What a dataset layout is, and the file reading every layout shares.

A layout says how one dataset's videos, labels and splits are found on disk (`Layout`); reading
its sources yields the class names and, per split, the ordered list of examples to store
(`DatasetContents` of `VideoEntry`). Decoding, the record format, writing, skip accounting and
the input pipeline are the same for every layout and live outside this package.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence

import ml_collections

# File name extensions taken for videos where a tree is searched (compared in lower case).
VIDEO_EXTENSIONS = frozenset(
    {'.avi', '.mp4', '.m4v', '.mkv', '.webm', '.mov', '.mpg', '.mpeg', '.flv', '.wmv', '.3gp',
     '.ts', '.ogv'}
)


class SourceError(ValueError):
    """A list, annotation file or video tree is missing, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One example to store: a video file, or one time segment of it."""

    video_id: str  # The example's id, unique within its split ('<class>/<file stem>', ...).
    class_name: str
    label: int  # Index of `class_name` in the dataset's class names.
    path: str  # The video file; '' when it is missing.
    source: str  # Where it is listed, for messages: '<file>:<line>'.
    segment: tuple[float, float] | None = None  # Seconds into the video; None: all of it.
    missing: str = ''  # Why the file is absent (layouts that skip missing videos); '' if found.


@dataclasses.dataclass(frozen=True)
class DatasetContents:
    """Class names in label order and each split's examples in storage order."""

    class_names: list[str]
    splits: dict[str, list[VideoEntry]]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one dataset is laid out on disk; a module per layout defines one (`LAYOUT`)."""

    name: str  # `config.data.dataset` and `--dataset`; the dataset's folder is `<name>_frames`.
    title: str  # As people write it: 'HMDB-51'.
    homepage: str
    # The build flags naming its files, each with what it should point at.
    sources: Mapping[str, str]
    optional_sources: tuple[str, ...]  # Those of `sources` that may be left out.
    # The `config.data` fields (besides frame size and JPEG quality) its contents depend on.
    config_fields: tuple[str, ...]
    splits: tuple[str, ...]  # The splits it can write, in order.
    skips_missing_videos: bool  # A listed video without a file: skipped (True) or an error.
    max_skip_fraction: float  # Share of a split that may be skipped unless the config says.
    # The first part of the builder config name ('split1' of 'split1_128px'); validates fields.
    identity: Callable[[ml_collections.ConfigDict], str]
    # Reads and validates the sources (build flag values) into what is to be stored.
    read_contents: Callable[[Mapping[str, str], ml_collections.ConfigDict], DatasetContents]


def require_directory(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise SourceError(f'The {what} {path} does not exist or is not a directory.')
    return path


def read_lines(path: str) -> list[tuple[int, str]]:
    """Non-blank lines, stripped (CRLF and trailing spaces too), with their 1-based numbers."""
    if not os.path.isfile(path):
        raise SourceError(f'{path}: file not found.')
    try:
        with open(path, encoding='utf-8') as f:
            lines = [(number, line.strip()) for number, line in enumerate(f, start=1)]
    except UnicodeDecodeError as error:
        raise SourceError(f'{path}: not UTF-8 text ({error}).') from error
    return [(number, line) for number, line in lines if line]


def is_video_file(name: str) -> bool:
    return not name.startswith('.') and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def index_videos(directory: str) -> dict[str, list[str]]:
    """Every video file under `directory` by file stem, each stem's paths sorted.

    One walk of the tree, so that a dataset of hundreds of thousands of files is matched to
    its list without a search per entry.
    """
    index: dict[str, list[str]] = {}
    for parent, folders, files in os.walk(directory):
        folders[:] = [name for name in folders if not name.startswith('.')]
        for name in files:
            if is_video_file(name):
                index.setdefault(os.path.splitext(name)[0], []).append(os.path.join(parent, name))
    for paths in index.values():
        paths.sort()
    return index


def check_disjoint(splits: Mapping[str, Sequence[VideoEntry]], key: Callable[[VideoEntry], str]):
    """A video listed twice, in one split or in two, is an error naming both places."""
    seen: dict[str, tuple[str, VideoEntry]] = {}
    for split, entries in splits.items():
        for entry in entries:
            if entry.segment is not None:
                continue  # Segments of one video share its file by design.
            name = key(entry)
            if name in seen:
                other_split, other = seen[name]
                where = 'also' if other_split == split else f'also in the {other_split} split,'
                raise SourceError(
                    f'{entry.source}: {entry.video_id} is {where} listed at {other.source}.'
                )
            seen[name] = (split, entry)

