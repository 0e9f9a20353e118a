"""Evaluation reports: the terminal table, `eval_<mode>.json`, a confusion figure, TensorBoard.

They stay readable for any number of classes. Up to `MAX_LISTED_CLASSES` the table lists every
class and a figure draws the confusion matrix; beyond (Kinetics' 400-700 classes) the table
shows the `SUMMARY_CLASSES` worst and best classes and the most frequent confusions
(true -> predicted), which also replace the figure in the workdir and TensorBoard (as text).
The JSON always holds everything: every class, the whole matrix and the top confusions.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from clu import metric_writers

if TYPE_CHECKING:
    from r3d_jax.evaluation import EvalResult

MAX_LISTED_CLASSES = 101  # UCF-101's classes are listed and drawn in full; more are summarised.
SUMMARY_CLASSES = 10  # Worst and best classes a summarised table shows.
CONFUSIONS_SHOWN = 10  # Top confusions a summarised table shows (the JSON holds all it has).


def _class_rows(
    result: EvalResult, class_names: Sequence[str], indices: Sequence[int], width: int
) -> list[str]:
    videos = result.confusion_matrix.sum(axis=1)
    rows = []
    for index in indices:
        accuracy = result.per_class_accuracy[index]
        shown = '     -' if math.isnan(accuracy) else f'{100 * accuracy:5.1f}%'
        rows.append(f'  {class_names[index]:<{width}}  {int(videos[index]):>6}  {shown}')
    return rows


def worst_and_best_classes(
    per_class_accuracy: np.ndarray, count: int
) -> tuple[list[int], list[int]]:
    """The `count` classes with the lowest video top-1 (lowest first) and the `count` with the
    highest (highest first), among classes with videos; equal accuracies by class index."""
    present = np.flatnonzero(~np.isnan(per_class_accuracy))
    ascending = present[np.argsort(per_class_accuracy[present], kind='stable')]
    descending = present[np.argsort(-per_class_accuracy[present], kind='stable')]
    return ascending[:count].tolist(), descending[:count].tolist()


def format_table(result: EvalResult, class_names: Sequence[str]) -> str:
    """Headline numbers, then per-class video accuracy (summarised for many classes), as
    aligned plain text."""
    lines = [
        f'{result.mode}-mode evaluation ({result.protocol}): {result.num_videos} videos, '
        f'{result.num_clips} clips',
        f'  {"clip loss":<22}{result.clip_loss:>9.4f}',
    ]
    for key, value in result.scalars().items():
        if key != 'clip_loss':
            lines.append(f'  {key.replace("_", " "):<22}{100 * value:>8.2f}%')
    width = max([len('class'), *(len(name) for name in class_names)])
    header = f'  {"class":<{width}}  videos  top-1'
    if len(class_names) <= MAX_LISTED_CLASSES:
        lines.append(header)
        lines += _class_rows(result, class_names, range(len(class_names)), width)
        return '\n'.join(lines)
    worst, best = worst_and_best_classes(result.per_class_accuracy, SUMMARY_CLASSES)
    without = int(np.isnan(result.per_class_accuracy).sum())
    lines.append(
        f'  {len(class_names)} classes ({without} without videos); every class is in '
        f'eval_{result.mode}.json. Worst {len(worst)} by video top-1:'
    )
    lines += [header, *_class_rows(result, class_names, worst, width)]
    lines += [f'  Best {len(best)}:', header, *_class_rows(result, class_names, best, width)]
    lines.append(f'  Most frequent confusions (of {len(result.top_confusions)} in the JSON):')
    width = max(width, len('predicted class'))
    lines.append(f'  {"true class":<{width}}  {"predicted class":<{width}}  videos   share')
    for entry in result.top_confusions[:CONFUSIONS_SHOWN]:
        lines.append(
            f'  {class_names[entry.true]:<{width}}  {class_names[entry.predicted]:<{width}}  '
            f'{entry.videos:>6}  {100 * entry.fraction:5.1f}%'
        )
    return '\n'.join(lines)


def top_confusions_markdown(result: EvalResult, class_names: Sequence[str]) -> str:
    """The top confusions as a Markdown table (TensorBoard's text dashboard renders it)."""
    lines = [
        f'{result.mode} mode ({result.protocol}), most frequent confusions:',
        '',
        '| true class | predicted class | videos | share of the true class |',
        '|---|---|---:|---:|',
    ]
    for entry in result.top_confusions:
        lines.append(
            f'| {class_names[entry.true]} | {class_names[entry.predicted]} | {entry.videos} | '
            f'{100 * entry.fraction:.1f}% |'
        )
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


class ReportPaths(NamedTuple):
    """Where `write_report` puts the report of one protocol."""

    report: str  # The JSON with every figure.
    confusions: str  # The confusion figure, or beyond MAX_LISTED_CLASSES the top confusions.

    @property
    def confusions_label(self) -> str:
        return 'confusion figure' if self.confusions.endswith('.png') else 'top confusions'


def report_paths(workdir: str, mode: str, num_classes: int) -> ReportPaths:
    """The files of the report of `mode` for a model of `num_classes` classes."""
    confusions = (
        f'confusion_{mode}.png' if num_classes <= MAX_LISTED_CLASSES else f'confusions_{mode}.md'
    )
    return ReportPaths(
        os.path.join(workdir, f'eval_{mode}.json'), os.path.join(workdir, confusions)
    )


def write_report(
    result: EvalResult,
    *,
    workdir: str,
    class_names: Sequence[str],
    writer: metric_writers.MetricWriter | None = None,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Writes the report of `result` where `report_paths` says, and TensorBoard data."""
    from PIL import Image

    os.makedirs(workdir, exist_ok=True)
    paths = report_paths(workdir, result.mode, len(class_names))
    report = {**(extra or {}), 'step': step, **result.to_json(class_names)}
    _write_atomically(
        paths.report, lambda path: _write_text(json.dumps(report, indent=2) + '\n', path)
    )
    prefix = f'eval_{result.mode}'
    if len(class_names) <= MAX_LISTED_CLASSES:
        image = confusion_matrix_image(
            result.confusion_matrix,
            class_names,
            f'{result.mode} mode: video top-1 {100 * result.video_top1:.2f}%',
        )
        _write_atomically(
            paths.confusions, lambda path: Image.fromarray(image).save(path, format='PNG')
        )
    else:
        text = top_confusions_markdown(result, class_names)
        _write_atomically(paths.confusions, lambda path: _write_text(text + '\n', path))
    if writer is not None:
        writer.write_scalars(step, {f'{prefix}/{k}': v for k, v in result.scalars().items()})
        if len(class_names) <= MAX_LISTED_CLASSES:
            writer.write_images(step, {f'{prefix}/confusion_matrix': image[None]})
        else:
            writer.write_texts(step, {f'{prefix}/top_confusions': text})
        writer.flush()


def _write_text(text: str, path: str) -> None:
    with open(path, 'w') as file:
        file.write(text)


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Writes through a temporary file so that a partial report never carries the final name."""
    temporary = f'{path}.tmp'
    write(temporary)
    os.replace(temporary, path)
