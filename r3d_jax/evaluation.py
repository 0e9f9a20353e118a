"""Evaluation: clip accuracy, and the paper's video accuracy from clip scores averaged per video.

Video level (what Hara et al. report): every clip of a video -- the non-overlapping clips that
cover it, times the spatial views -- is scored with a softmax, the scores are averaged over the
video's clips and the highest class is the video's prediction. Clip level (what the reference
logs each epoch) scores every clip on its own. One pass over `create_eval_iterator` gives both.

Clips of one video may arrive in different batches, on different devices or processes, and
batches end with padding; clips are therefore summed into per-video totals indexed by
`video_index`, padding is dropped by `mask`, and a summary refuses totals in which a video of the
split has no clip at all.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from clu import metric_writers
from jax.experimental import multihost_utils

from r3d_jax import checkpoints, steps
from r3d_jax.data import input_pipeline
from r3d_jax.models import create_model, expected_variables

EVAL_MODES = ('clip', 'video')


class EvaluationError(ValueError):
    """The evaluation data or its results do not allow a trustworthy accuracy."""


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Accuracies of one evaluation pass; fractions in [0, 1]."""

    mode: str  # 'clip' or 'video': which clips the iterator produced.
    num_clips: int
    num_videos: int
    clip_loss: float  # Mean cross-entropy over clips.
    clip_top1: float
    clip_top5: float
    video_top1: float  # From the softmax averaged over the video's clips.
    video_top5: float
    mean_class_accuracy: float  # Video top-1 averaged over the classes that have videos.
    per_class_accuracy: np.ndarray  # [num_classes] video top-1; NaN for a class without videos.
    confusion_matrix: np.ndarray  # [true class, predicted class] video counts.

    def scalars(self) -> dict[str, float]:
        """The headline numbers, keyed for TensorBoard and logs."""
        return {
            'clip_loss': self.clip_loss,
            'clip_top1': self.clip_top1,
            'clip_top5': self.clip_top5,
            'video_top1': self.video_top1,
            'video_top5': self.video_top5,
            'mean_class_accuracy': self.mean_class_accuracy,
        }

    def to_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        """A JSON-ready dict; classes are named, NaN accuracies become null."""
        return {
            'mode': self.mode,
            'num_clips': self.num_clips,
            'num_videos': self.num_videos,
            **self.scalars(),
            'per_class': [
                {
                    'class': name,
                    'videos': int(videos),
                    'accuracy': None if math.isnan(accuracy) else float(accuracy),
                }
                for name, videos, accuracy in zip(
                    class_names,
                    self.confusion_matrix.sum(axis=1),
                    self.per_class_accuracy,
                    strict=True,
                )
            ],
            'confusion_matrix': self.confusion_matrix.tolist(),
        }


# ---------------------------------------------------------------------------------------------
# Metrics on host arrays.


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def top_k_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Whether each label is among the k highest scores; ties go to the lower class index."""
    ranked = np.argsort(-np.asarray(scores), axis=-1, kind='stable')[..., :k]
    return np.any(ranked == np.asarray(labels)[..., None], axis=-1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Top-1 accuracy of each true class; NaN for a class with no example."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def mean_class_accuracy(class_accuracies: np.ndarray) -> float:
    """Mean over the classes that have examples (NaN when none has)."""
    present = class_accuracies[~np.isnan(class_accuracies)]
    return float(present.mean()) if present.size else math.nan


@dataclasses.dataclass
class ScoreTotals:
    """Running sums over evaluation batches, per video and over clips."""

    score_sums: np.ndarray  # [num_videos, num_classes] summed clip probabilities.
    clip_counts: np.ndarray  # [num_videos] clips seen per video.
    video_labels: np.ndarray  # [num_videos] label of each video; -1 until one of its clips is seen.
    clip_loss_sum: float = 0.0
    clip_top1_hits: int = 0
    clip_top5_hits: int = 0

    @classmethod
    def zeros(cls, num_videos: int, num_classes: int) -> ScoreTotals:
        return cls(
            score_sums=np.zeros((num_videos, num_classes), np.float64),
            clip_counts=np.zeros(num_videos, np.int64),
            video_labels=np.full(num_videos, -1, np.int64),
        )

    @property
    def num_clips(self) -> int:
        return int(self.clip_counts.sum())

    def add(
        self,
        probabilities: np.ndarray,
        losses: np.ndarray,
        labels: np.ndarray,
        video_index: np.ndarray,
        mask: np.ndarray,
    ) -> None:
        """Adds a batch of clips (any leading shape); clips whose mask is False are ignored."""
        num_videos, num_classes = self.score_sums.shape
        keep = np.asarray(mask, bool).reshape(-1)
        probabilities = np.asarray(probabilities, np.float64).reshape(-1, num_classes)[keep]
        losses = np.asarray(losses, np.float64).reshape(-1)[keep]
        labels = np.asarray(labels, np.int64).reshape(-1)[keep]
        video_index = np.asarray(video_index, np.int64).reshape(-1)[keep]
        if video_index.size and (video_index.min() < 0 or video_index.max() >= num_videos):
            raise EvaluationError(
                f'video_index {int(video_index.min())}..{int(video_index.max())} lies outside '
                f'the {num_videos} videos of the evaluation split.'
            )
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise EvaluationError(
                f"label {int(labels.max())} lies outside the model's {num_classes} classes; "
                'config.model.num_classes must match the dataset.'
            )
        known = self.video_labels[video_index]
        self.video_labels[video_index] = labels
        conflicting = ((known >= 0) & (known != labels)) | (
            self.video_labels[video_index] != labels
        )
        if conflicting.any():
            video = int(video_index[conflicting][0])
            raise EvaluationError(f'The clips of video {video} carry different labels.')
        np.add.at(self.score_sums, video_index, probabilities)
        np.add.at(self.clip_counts, video_index, 1)
        self.clip_loss_sum += float(losses.sum())
        self.clip_top1_hits += int(top_k_hits(probabilities, labels, 1).sum())
        self.clip_top5_hits += int(top_k_hits(probabilities, labels, 5).sum())


def summarize(totals: ScoreTotals, mode: str) -> EvalResult:
    """Clip and video accuracies from complete totals (every video of the split seen)."""
    missing = np.flatnonzero(totals.clip_counts == 0)
    if missing.size:
        raise EvaluationError(
            f'{missing.size} of {totals.clip_counts.size} videos received no clip '
            f'(video_index {missing[:10].tolist()}...); the evaluation would drop them.'
        )
    num_classes = totals.score_sums.shape[1]
    video_scores = totals.score_sums / totals.clip_counts[:, None]
    confusion = confusion_matrix(totals.video_labels, video_scores.argmax(axis=1), num_classes)
    class_accuracies = per_class_accuracy(confusion)
    num_clips = totals.num_clips
    return EvalResult(
        mode=mode,
        num_clips=num_clips,
        num_videos=int(totals.clip_counts.size),
        clip_loss=totals.clip_loss_sum / num_clips,
        clip_top1=totals.clip_top1_hits / num_clips,
        clip_top5=totals.clip_top5_hits / num_clips,
        video_top1=float(top_k_hits(video_scores, totals.video_labels, 1).mean()),
        video_top5=float(top_k_hits(video_scores, totals.video_labels, 5).mean()),
        mean_class_accuracy=mean_class_accuracy(class_accuracies),
        per_class_accuracy=class_accuracies,
        confusion_matrix=confusion,
    )


def sum_over_processes(totals: ScoreTotals) -> ScoreTotals:
    """Totals of all processes (each scored its own shard of the split)."""
    if jax.process_count() == 1:
        return totals
    gathered = multihost_utils.process_allgather(
        {
            'score_sums': totals.score_sums.astype(np.float32),
            'clip_counts': totals.clip_counts.astype(np.int32),
            'video_labels': totals.video_labels.astype(np.int32),
            'clip_sums': np.array(
                [totals.clip_loss_sum, totals.clip_top1_hits, totals.clip_top5_hits], np.float32
            ),
        }
    )
    clip_sums = np.asarray(gathered['clip_sums']).sum(axis=0)
    return ScoreTotals(
        score_sums=np.asarray(gathered['score_sums'], np.float64).sum(axis=0),
        clip_counts=np.asarray(gathered['clip_counts'], np.int64).sum(axis=0),
        video_labels=np.asarray(gathered['video_labels'], np.int64).max(axis=0),
        clip_loss_sum=float(clip_sums[0]),
        clip_top1_hits=round(clip_sums[1]),
        clip_top5_hits=round(clip_sums[2]),
    )


# ---------------------------------------------------------------------------------------------
# The forward pass over the evaluation split.


def clip_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int, int]:
    """Shape of a batch of one evaluation clip, [1, T, S, S, 3]."""
    crop = config.input.crop_size
    return (1, config.input.clip_length, crop, crop, 3)


def on_every_local_device(variables: Any, expected: Any) -> Any:
    """One copy of `variables` on each local device, as `pmapped_eval_step` takes them.

    Accepts plain (host or device) variables, variables already replicated that way (a no-op),
    and variables stacked along a leading local-device axis (the first copy is used).
    """
    num_devices = jax.local_device_count()
    shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(variables)]
    wanted = [tuple(leaf.shape) for leaf in jax.tree.leaves(expected)]
    if shapes != wanted and shapes == [(num_devices, *shape) for shape in wanted]:
        variables = jax.tree.map(lambda leaf: leaf[0], variables)
    return steps.replicate(variables, jax.local_devices())


def _one_batch_ahead(
    batches: Iterable[Mapping[str, np.ndarray]], step: Callable[..., Any], variables: Any
) -> Iterator[tuple[Mapping[str, np.ndarray], Any]]:
    """Dispatches the next batch before the previous result is read, so the device never waits."""
    pending = None
    for batch in batches:
        outputs = step(variables, batch['clips'], batch['labels'])
        if pending is not None:
            yield pending
        pending = (batch, outputs)
    if pending is not None:
        yield pending


def evaluate(
    config: ml_collections.ConfigDict, model: nn.Module, variables: Any, *, mode: str
) -> EvalResult:
    """Scores every clip of the evaluation split (`mode` 'clip' or 'video') and summarises."""
    if mode not in EVAL_MODES:
        raise ValueError(f'mode must be one of {EVAL_MODES}, got {mode!r}.')
    split = config.data.eval_split
    num_videos = input_pipeline.dataset_metadata(config).num_examples.get(split, 0)
    if num_videos == 0:
        raise EvaluationError(
            f'The {split!r} split in {config.data.data_dir} holds no videos; nothing to evaluate.'
        )
    device_variables = on_every_local_device(
        variables, expected_variables(model, clip_shape(config))
    )
    totals = ScoreTotals.zeros(num_videos, config.model.num_classes)
    batches = input_pipeline.create_eval_iterator(config, mode=mode)
    for batch, (probabilities, losses) in _one_batch_ahead(
        batches, steps.pmapped_eval_step(model), device_variables
    ):
        totals.add(
            probabilities=np.asarray(probabilities),
            losses=np.asarray(losses),
            labels=batch['labels'],
            video_index=batch['video_index'],
            mask=batch['mask'],
        )
    return summarize(sum_over_processes(totals), mode)


# ---------------------------------------------------------------------------------------------
# Reports: terminal table, JSON, confusion-matrix figure, TensorBoard.


def format_table(result: EvalResult, class_names: Sequence[str]) -> str:
    """Headline numbers, then per-class video accuracy, as aligned plain text."""
    lines = [
        f'{result.mode}-mode evaluation: {result.num_videos} videos, {result.num_clips} clips',
        f'  {"clip loss":<22}{result.clip_loss:>9.4f}',
    ]
    for key, value in result.scalars().items():
        if key != 'clip_loss':
            lines.append(f'  {key.replace("_", " "):<22}{100 * value:>8.2f}%')
    width = max([len('class'), *(len(name) for name in class_names)])
    lines.append(f'  {"class":<{width}}  videos  top-1')
    for name, videos, accuracy in zip(
        class_names, result.confusion_matrix.sum(axis=1), result.per_class_accuracy, strict=True
    ):
        shown = '     -' if math.isnan(accuracy) else f'{100 * accuracy:5.1f}%'
        lines.append(f'  {name:<{width}}  {int(videos):>6}  {shown}')
    return '\n'.join(lines)


def confusion_matrix_image(
    confusion: np.ndarray, class_names: Sequence[str], title: str
) -> np.ndarray:
    """The row-normalised confusion matrix drawn with class names, as uint8 RGB [H, W, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num_classes = len(class_names)
    cell_inches = 0.2  # Room for one row of the matrix and its label.
    side = max(5.0, 3.0 + cell_inches * num_classes)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    totals = confusion.sum(axis=1, keepdims=True)
    fractions = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    shown = axes.imshow(fractions, cmap='viridis', vmin=0.0, vmax=1.0, interpolation='nearest')
    figure.colorbar(shown, ax=axes, fraction=0.04, label='fraction of the true class')
    font_size = min(10.0, 0.55 * cell_inches * 72)
    axes.set_xticks(range(num_classes), class_names, rotation=90, fontsize=font_size)
    axes.set_yticks(range(num_classes), class_names, fontsize=font_size)
    axes.set_xlabel('predicted class')
    axes.set_ylabel('true class')
    axes.set_title(title)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def write_report(
    result: EvalResult,
    *,
    workdir: str,
    class_names: Sequence[str],
    writer: metric_writers.MetricWriter | None = None,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Writes `eval_<mode>.json` and `confusion_<mode>.png` to `workdir`, and TensorBoard data."""
    from PIL import Image

    os.makedirs(workdir, exist_ok=True)
    report = {**(extra or {}), 'step': step, **result.to_json(class_names)}
    _write_atomically(
        os.path.join(workdir, f'eval_{result.mode}.json'),
        lambda path: _dump_json(report, path),
    )
    image = confusion_matrix_image(
        result.confusion_matrix,
        class_names,
        f'{result.mode} mode: video top-1 {100 * result.video_top1:.2f}%',
    )
    _write_atomically(
        os.path.join(workdir, f'confusion_{result.mode}.png'),
        lambda path: Image.fromarray(image).save(path, format='PNG'),
    )
    if writer is not None:
        prefix = f'eval_{result.mode}'
        writer.write_scalars(step, {f'{prefix}/{k}': v for k, v in result.scalars().items()})
        writer.write_images(step, {f'{prefix}/confusion_matrix': image[None]})
        writer.flush()


def _dump_json(data: Any, path: str) -> None:
    with open(path, 'w') as file:
        json.dump(data, file, indent=2)
        file.write('\n')


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Writes through a temporary file so that a partial report never carries the final name."""
    temporary = f'{path}.tmp'
    write(temporary)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------
# Evaluating a stored checkpoint (what eval.py runs).


def resolve_class_names(
    checkpoint_names: Sequence[str] | None,
    dataset_names: Sequence[str] | None,
    num_classes: int,
    source: str,
) -> list[str]:
    """The class names to report, checking that the checkpoint and the dataset agree."""
    if checkpoint_names and dataset_names and list(checkpoint_names) != list(dataset_names):
        raise checkpoints.CheckpointError(
            f'{source} was trained on other classes than the evaluation dataset holds '
            f'(checkpoint: {list(checkpoint_names)[:3]}..., dataset: {list(dataset_names)[:3]}...).'
        )
    names = list(checkpoint_names or dataset_names or [str(i) for i in range(num_classes)])
    if len(names) != num_classes:
        raise checkpoints.CheckpointError(
            f'{source} names {len(names)} classes but the model has {num_classes} outputs.'
        )
    return names


def evaluate_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    checkpoint: str = 'latest',
    modes: Sequence[str] = ('video',),
) -> dict[str, EvalResult]:
    """Evaluates a checkpoint ('latest', 'best' or a directory) and writes the reports."""
    directory = checkpoints.find_checkpoint(workdir, checkpoint)
    variables, metadata = checkpoints.load_variables(directory)
    model = create_model(config)
    checkpoints.check_variables_fit(
        variables, expected_variables(model, clip_shape(config)), f'Checkpoint {directory}'
    )
    class_names = resolve_class_names(
        metadata.get('class_names'),
        input_pipeline.dataset_metadata(config).class_names,
        config.model.num_classes,
        f'Checkpoint {directory}',
    )
    step = int(metadata.get('step', 0))
    is_writer = jax.process_index() == 0
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_writer)
    results = {}
    try:
        for mode in modes:
            result = evaluate(config, model, variables, mode=mode)
            if is_writer:
                print(format_table(result, class_names), flush=True)
                write_report(
                    result,
                    workdir=workdir,
                    class_names=class_names,
                    writer=writer,
                    step=step,
                    extra={'checkpoint': directory},
                )
            results[mode] = result
    finally:
        writer.close()
    return results
