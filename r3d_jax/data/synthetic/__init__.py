"""Synthetic datasets in each real dataset's exact on-disk layout and codec, for demos and tests.

Every layout shows the same motion classes (`render`: objects that drift, swing, orbit, spin or
zoom; only the motion tells classes apart, so a 3D CNN can learn them and a frame-level model
cannot), stored as the real dataset stores its videos, with its names, lists and quirks:

- 'ucf101': `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` (XviD AVI) and `ucfTrainTestlist/`.
- 'hmdb51': `hmdb51_org/<class>/<video>.avi` (DivX AVI) and `testTrainMulti_7030_splits/`.
- 'video_list': class folders of H.264 MP4s of mixed sizes and frame rates, with
  `train.txt`/`test.txt`/`classes.txt` lists (or split folders without lists).
- 'kinetics': `train.csv`/`validate.csv` and `<id>_<start>_<end>.mp4` clips, some missing.
- 'activitynet': `activity_net.v1-3.min.json` and `v_<id>.mp4` videos with annotated segments.

    python -m r3d_jax.data.synthetic --dataset=ucf101 --output_dir=data/synthetic_ucf101 \
        --num_classes=10

`generate` returns a `SyntheticTree` whose `sources` are the dataset builder's flags for it
(`videos_dir`, `splits_dir`, `train_csv`, `val_csv`, `annotations`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from r3d_jax import defaults
from r3d_jax.data.synthetic import activitynet, hmdb51, kinetics, tree, ucf101, video_list
from r3d_jax.data.synthetic.render import HEIGHT, WIDTH, motion_classes, render_frames, write_avi
from r3d_jax.data.synthetic.tree import SyntheticTree

LAYOUTS: dict[str, Callable[[tree.Parameters], tree.Plan]] = {
    'ucf101': ucf101.plan,
    'hmdb51': hmdb51.plan,
    'video_list': video_list.plan,
    'kinetics': kinetics.plan,
    'activitynet': activitynet.plan,
}

__all__ = [
    'HEIGHT',
    'LAYOUTS',
    'WIDTH',
    'SyntheticTree',
    'ensure_tree',
    'generate',
    'generate_kinetics_benchmark',
    'generated_parameters',
    'generated_tree',
    'motion_classes',
    'render_frames',
    'write_avi',
]


def _layout(dataset: str) -> Callable[[tree.Parameters], tree.Plan]:
    if dataset not in LAYOUTS:
        raise ValueError(f'Unknown synthetic dataset {dataset!r}; the layouts are {list(LAYOUTS)}.')
    return LAYOUTS[dataset]


def generate(
    dataset: str, output_dir: str, *, workers: int = 0, **parameters: Any
) -> SyntheticTree:
    """Writes the synthetic `dataset` tree into `output_dir` (absent or empty) and returns it.

    `parameters` are `config.data.synthetic`'s fields; those not given take the schema's
    defaults. The tree is written next to `output_dir` and renamed into place only when
    complete, so an interrupted run never leaves a tree that looks whole. `workers=0` uses
    every CPU core.
    """
    plan = _layout(dataset)
    resolved = tree.parameters_from(parameters)
    return tree.write_tree(output_dir, dataset, vars(resolved), plan(resolved), workers)


def generate_kinetics_benchmark(
    output_dir: str, num_clips: int, *, seed: int = 0, workers: int = 0
) -> SyntheticTree:
    """A Kinetics-format tree of `num_clips` 10-second 30 fps H.264 clips, half 640x360 and half
    340x256, cheap to render (see `kinetics.benchmark_plan`), for decoding benchmarks."""
    return tree.write_tree(
        output_dir,
        'kinetics',
        {'benchmark_clips': num_clips, 'seed': seed},
        kinetics.benchmark_plan(num_clips, seed),
        workers,
    )


def generated_tree(output_dir: str) -> SyntheticTree | None:
    """The tree `generate` wrote in `output_dir`, or None if it wrote none there."""
    found = tree.generated_tree(output_dir)
    if found is None or found.dataset:
        return found
    # Written before there were other layouts: a UCF-101 tree, its record its parameters.
    parameters = {**defaults.get_config().data.synthetic.to_dict(), **found.parameters}
    return tree.SyntheticTree(
        root=found.root,
        dataset='ucf101',
        parameters=parameters,
        sources=tree.absolute_sources(found.root, ucf101.SOURCES),
    )


def generated_parameters(output_dir: str) -> dict[str, Any] | None:
    """What `generate` wrote `output_dir` with -- `{'dataset': ..., **parameters}` -- or None
    if it did not write it."""
    found = generated_tree(output_dir)
    return None if found is None else {'dataset': found.dataset, **found.parameters}


def ensure_tree(
    dataset: str, output_dir: str, *, workers: int = 0, **parameters: Any
) -> SyntheticTree:
    """The tree in `output_dir` if `generate` wrote it with these arguments; else generates it
    there when `output_dir` is absent or empty, and refuses a tree generated otherwise."""
    _layout(dataset)
    wanted = {'dataset': dataset, **vars(tree.parameters_from(parameters))}
    found = generated_tree(output_dir)
    if found is None:
        return generate(dataset, output_dir, workers=workers, **parameters)
    if {'dataset': found.dataset, **found.parameters} != wanted:
        raise ValueError(
            f'{output_dir} holds synthetic videos generated with '
            f'{ {"dataset": found.dataset, **found.parameters} }, but {wanted} is wanted; delete '
            'it or generate into another directory.'
        )
    return found
