"""The one TFDS builder for every layout: each example's JPEG frames and label, in TFRecords.

Every layout stores the same record (`features`): `frames` (a sequence of JPEG images),
`label`, `class_name`, `video_id`, `num_frames` and `fps`, so the input pipeline reads any of
them alike. The builder writes from one of two sources:

- locally, from the build cache that `build_cache.fill` decoded (chunks of decoded videos):
  TFDS only serialises and shuffles, no decoding happens in this phase;
- with Apache Beam, by decoding in the pipeline itself: `_generate_examples` returns a
  `beam.PTransform`, run by whatever runner the build is given (`DownloadConfig.beam_runner`,
  `beam_options`). Each entry's outcome is also written, without frames, beside the dataset,
  and read back once the pipeline has run.

Either way the outcomes give each split's report (listed, found, decoded, skipped, codecs),
checked against `max_skip_fraction` and against what TFDS wrote while TFDS still holds the
dataset in its `incomplete.*` staging directory, and recorded in the dataset's metadata
(`skipped_videos`, `build`): nothing that loads as complete exists unless every check passed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from r3d_jax import console
from r3d_jax.data import build_cache, layouts
from r3d_jax.data.build_cache import Chunk, Decoding, Outcome
from r3d_jax.data.layouts import DatasetContents, Layout

DATASET_VERSION = '1.0.0'
BEAM_OUTCOMES_DIRNAME = 'beam_outcomes'
SKIPS_LISTED_IN_ERRORS = 20  # The rest are counted; the metadata of a build lists them all.


class SkippedVideosError(RuntimeError):
    """A split lost more videos (missing or undecodable) than the build may skip."""


class BeamNotInstalledError(ImportError):
    """The build was asked to run on Apache Beam, which is not installed."""


def features(class_names: Sequence[str]) -> tfds.features.FeaturesDict:
    """The stored record; `build_cache.example_of` fills it."""
    return tfds.features.FeaturesDict(
        {
            'frames': tfds.features.Sequence(
                tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg')
            ),
            'label': tfds.features.ClassLabel(names=list(class_names)),
            'class_name': tfds.features.Text(),
            'video_id': tfds.features.Text(),
            'num_frames': tfds.features.Scalar(dtype=np.int32),
            'fps': tfds.features.Scalar(dtype=np.float32),
        }
    )


# ---------------------------------------------------------------------------------------------
# Skip accounting.


@dataclasses.dataclass(frozen=True)
class SplitReport:
    """What became of a split's listed examples."""

    listed: int
    found: int  # Their video file exists.
    decoded: int  # Stored.
    skipped: int  # listed - decoded: missing, undecodable, or no frame in their segment.
    codecs: dict[str, int]  # Decoded examples per codec, as FFmpeg names it.


def split_reports(outcomes: Iterable[Outcome], splits: Sequence[str]) -> dict[str, SplitReport]:
    counts = {split: collections.Counter() for split in splits}
    codecs = {split: collections.Counter() for split in splits}
    for outcome in outcomes:
        counts[outcome.split].update(
            listed=1, found=not outcome.missing, decoded=not outcome.reason
        )
        if not outcome.reason:
            codecs[outcome.split][outcome.codec] += 1
    return {
        split: SplitReport(
            listed=counts[split]['listed'],
            found=counts[split]['found'],
            decoded=counts[split]['decoded'],
            skipped=counts[split]['listed'] - counts[split]['decoded'],
            codecs=dict(sorted(codecs[split].items())),
        )
        for split in splits
    }


def describe_skipped(skipped: Sequence[Outcome], limit: int | None = None) -> str:
    shown = skipped if limit is None else skipped[:limit]
    lines = [f'  [{s.split}] {s.path or s.video_id}: {s.reason}' for s in shown]
    if len(skipped) > len(shown):
        lines.append(f'  ... and {len(skipped) - len(shown)} more')
    return '\n'.join(lines)


def check_skips(
    reports: Mapping[str, SplitReport], outcomes: Sequence[Outcome], max_skip_fraction: float
) -> None:
    """Fails when a split skipped more than `max_skip_fraction` of its listed examples."""
    over = [
        split for split, report in reports.items()
        if report.skipped > max_skip_fraction * report.listed or not report.decoded
    ]
    if not over:
        return
    skipped = [o for o in outcomes if o.reason and o.split in over]
    losses = ', '.join(
        f'{split} {reports[split].skipped} of {reports[split].listed}' for split in over
    )
    raise SkippedVideosError(
        f'Too many videos skipped ({losses}; at most a fraction {max_skip_fraction} may be, '
        f'--max_skip_fraction / config.data.max_skip_fraction), so nothing was written:\n'
        f'{describe_skipped(skipped, SKIPS_LISTED_IN_ERRORS)}'
    )


# ---------------------------------------------------------------------------------------------
# The builder.


@dataclasses.dataclass(eq=False)
class FramesConfig(tfds.core.BuilderConfig):
    """A dataset's identity (`layouts.config_name`) and how its frames are stored."""

    frame_short_side: int = 128
    jpeg_quality: int = 90


class FramesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Any layout's examples; `builder_class(layout)` gives the class named for one layout."""

    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        DATASET_VERSION: 'JPEG frames of each example, short side resized.'
    }
    LAYOUT: ClassVar[Layout]

    def __init__(
        self,
        *,
        contents: DatasetContents,
        chunks: Mapping[str, Sequence[Chunk]] | None,
        max_skip_fraction: float,
        build_record: dict[str, Any],
        **kwargs,
    ):
        """`chunks`: the decoded build cache to write from; None decodes in Beam instead."""
        self._contents = contents
        self._chunks = chunks
        self._max_skip_fraction = max_skip_fraction
        self._build_record = build_record
        super().__init__(**kwargs)
        self.cache_dir = f'{self.data_dir}.partial'
        self.reports: dict[str, SplitReport] = {}
        self.skipped: list[Outcome] = []

    @property
    def decoding(self) -> Decoding:
        config = self.builder_config
        return Decoding(config.frame_short_side, config.jpeg_quality)

    def _log_download_bytes(self) -> None:
        """TFDS's "Downloading and preparing" line: nothing is downloaded, so only logged."""
        logging.info('Writing %s.', self.data_dir)

    def _log_download_done(self) -> None:
        """TFDS's "downloaded and prepared" line; the build prints its own summary."""
        logging.info('Wrote %s.', self.data_dir)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=features(self._contents.class_names),
            homepage=self.LAYOUT.homepage or None,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {split: self._generate_examples(split) for split in self._contents.splits}

    def _generate_examples(self, split: str):
        if self._chunks is None:
            return _beam_split(
                build_cache.file_jobs(self._contents.splits[split]),
                split,
                self.decoding,
                os.path.join(self.cache_dir, BEAM_OUTCOMES_DIRNAME, split),
            )
        return self._examples_from_chunks(split)

    def _examples_from_chunks(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        chunks = self._chunks[split]
        with console.progress(
            total=sum(len(c.jobs) for c in chunks), desc=f'{split} written', unit='video'
        ) as bar:
            for chunk in chunks:
                for example in build_cache.read_examples(chunk.path):
                    yield example['video_id'], example
                bar.update(len(chunk.jobs))

    def _outcomes(self) -> list[Outcome]:
        if self._chunks is not None:
            return [
                outcome
                for chunks in self._chunks.values()
                for chunk in chunks
                for outcome in build_cache.read_outcomes(chunk.path)
            ]
        outcomes = []
        for split in self._contents.splits:
            for path in sorted(epath.Path(self.cache_dir, BEAM_OUTCOMES_DIRNAME).glob(
                f'{split}-*'
            )):
                outcomes.extend(
                    Outcome(**json.loads(line)) for line in path.read_text().splitlines()
                )
        order = {  # The runner writes them in any order; the local build's is the lists'.
            (split, e.video_id): (s, i)
            for s, (split, entries) in enumerate(self._contents.splits.items())
            for i, e in enumerate(entries)
        }
        return sorted(outcomes, key=lambda o: order[(o.split, o.video_id)])

    def _download_and_prepare(
        self,
        dl_manager: tfds.download.DownloadManager,
        download_config: tfds.download.DownloadConfig,
    ) -> None:
        """Writes the splits, then checks and records them while TFDS still stages them."""
        if self._chunks is None:  # Outcomes of an earlier, interrupted run would count twice.
            outcomes_dir = epath.Path(self.cache_dir, BEAM_OUTCOMES_DIRNAME)
            if outcomes_dir.exists():
                outcomes_dir.rmtree()
            outcomes_dir.mkdir(parents=True)
        super()._download_and_prepare(dl_manager, download_config)
        outcomes = self._outcomes()
        self.reports = split_reports(outcomes, list(self._contents.splits))
        check_skips(self.reports, outcomes, self._max_skip_fraction)
        for split, report in self.reports.items():
            listed = len(self._contents.splits[split])
            written = self.info.splits[split].num_examples
            if report.listed != listed or written != report.decoded:
                raise RuntimeError(
                    f'The {split} split has {written} examples, but its list names {listed} '
                    f'of which {report.skipped} were skipped ({report.listed} accounted for).'
                )
        self.skipped = [outcome for outcome in outcomes if outcome.reason]
        self.info.metadata['skipped_videos'] = [
            {'split': s.split, 'video_id': s.video_id, 'path': s.path, 'source': s.source,
             'reason': s.reason}
            for s in self.skipped
        ]
        self.info.metadata['build'] = {
            **self._build_record,
            'splits': {split: dataclasses.asdict(r) for split, r in self.reports.items()},
        }


_BUILDER_CLASSES: dict[str, type[FramesBuilder]] = {}


def builder_class(layout: Layout) -> type[FramesBuilder]:
    """The builder of one layout, named `<layout>_frames` (the dataset's folder)."""
    if layout.name not in _BUILDER_CLASSES:
        name = layouts.dataset_name(layout)
        camel = ''.join(part.capitalize() for part in name.split('_'))
        _BUILDER_CLASSES[layout.name] = type(
            camel,
            (FramesBuilder,),
            {'name': name, 'LAYOUT': layout, '__module__': __name__},
            skip_registration=True,
        )
    return _BUILDER_CLASSES[layout.name]


# ---------------------------------------------------------------------------------------------
# Apache Beam: decoding in the pipeline.


def import_beam() -> Any:
    """apache_beam, or a clear error saying how to install it (it is optional)."""
    try:
        import apache_beam
    except ImportError as error:
        raise BeamNotInstalledError(
            'Building with --beam_runner needs Apache Beam, which is not installed: '
            'pip install -r requirements-beam.txt'
        ) from error
    return apache_beam


def beam_pipeline_options(options: str) -> Any:
    """Beam's options from 'key=value,key=value' (TFDS's `--beam_pipeline_options` style)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = [f'--{option.strip()}' for option in options.split(',') if option.strip()]
    return PipelineOptions(flags)


_EXAMPLES, _OUTCOMES = 'examples', 'outcomes'


def _decode_for_beam(job: build_cache.FileJob, split: str, decoding: Decoding) -> Iterator[Any]:
    from apache_beam import pvalue

    for outcome, example in build_cache.decode_file_job(job, split, decoding):
        yield pvalue.TaggedOutput(_OUTCOMES, json.dumps(dataclasses.asdict(outcome)))
        if example is not None:
            yield example['video_id'], example


def _beam_split(
    jobs: list[build_cache.FileJob], split: str, decoding: Decoding, outcomes_prefix: str
) -> Any:
    """The PTransform that decodes a split's videos and logs each entry's outcome."""
    beam = import_beam()

    @beam.ptransform_fn
    def decode_split(pipeline):
        results = (
            pipeline
            | 'Videos' >> beam.Create(jobs)
            | 'Spread' >> beam.Reshuffle()
            | 'Decode'
            >> beam.FlatMap(_decode_for_beam, split, decoding).with_outputs(
                _OUTCOMES, main=_EXAMPLES
            )
        )
        _ = results[_OUTCOMES] | 'LogOutcomes' >> beam.io.WriteToText(
            outcomes_prefix, file_name_suffix='.jsonl'
        )
        return results[_EXAMPLES]

    return decode_split()
