r"""Parameters and forward work of every architecture: the table of the README.

    python benchmarks/model_costs.py > model_costs.md

Counts come from the models' shapes (`jax.eval_shape` and `r3d_jax.models.flops`; nothing is
computed), so every machine prints the same figures; it runs in a few minutes on a CPU. Work is
per 16x112x112 clip, forward: multiply-adds of the convolutions and the classifier (GMAC) and
twice that in FLOP; parameters are those of the 400-class Kinetics models. The last column lists
the released PyTorch checkpoints of each model (their names and options as published), whose
layouts `python -m r3d_jax.convert_torch` reads.
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CLIP_LENGTH, CROP_SIZE, NUM_CLASSES = 16, 112, 400
# (arch, depth) -> the released checkpoints of that model and their options.
RELEASED = {
    ('resnet', 18): 'resnet-18-kinetics.pth (shortcut A)',
    ('resnet', 34): 'resnet-34-kinetics.pth (shortcut A)',
    ('resnet', 50): 'resnet-50-kinetics.pth',
    ('resnet', 101): 'resnet-101-kinetics.pth',
    ('resnet', 152): 'resnet-152-kinetics.pth',
    ('resnet', 200): 'resnet-200-kinetics.pth',
    ('preresnet', 200): 'preresnet-200-kinetics.pth',
    ('wideresnet', 50): 'wideresnet-50-kinetics.pth',
    ('resnext', 101): 'resnext-101-kinetics.pth; fine-tuned on split 1, 16 and 64 frames: '
    'resnext-101[-64f]-kinetics-{ucf101,hmdb51}_split1.pth',
    ('densenet', 121): 'densenet-121-kinetics.pth',
    ('densenet', 201): 'densenet-201-kinetics.pth',
    ('r3d', 18): "torchvision's r3d_18 (Kinetics-400)",
    ('mc3', 18): "torchvision's mc3_18 (Kinetics-400)",
    ('r2plus1d', 18): "torchvision's r2plus1d_18 (Kinetics-400)",
}
# torchvision publishes depth 18 only; the other depths of its layout are listed as one row.
TORCHVISION = ('r3d', 'mc3', 'r2plus1d')


def rows() -> list[tuple[str, str, float, float, str]]:
    """(model, config fields, M parameters, GMAC, released) for every model in the table."""
    import jax
    import numpy as np

    from r3d_jax import defaults
    from r3d_jax.models import ARCHITECTURES, create_model, expected_variables
    from r3d_jax.models.flops import forward_macs_per_clip

    jax.config.update('jax_platforms', 'cpu')
    table = []
    for arch, family in ARCHITECTURES.items():
        for depth in (18,) if arch in TORCHVISION else family.depths:
            config = defaults.get_config()
            config.model.update(arch=arch, depth=depth, num_classes=NUM_CLASSES)
            if (arch, depth) in (('resnet', 18), ('resnet', 34)):
                config.model.shortcut = 'A'  # As released.
            model = create_model(config)
            shapes = expected_variables(model, (1, CLIP_LENGTH, CROP_SIZE, CROP_SIZE, 3))
            parameters = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes['params']))
            macs = forward_macs_per_clip(model, CLIP_LENGTH, CROP_SIZE)
            fields = f"arch='{arch}', depth={depth}"
            if config.model.shortcut == 'A':
                fields += ", shortcut='A'"
            table.append((
                family.name(depth),
                fields,
                parameters / 1e6,
                macs / 1e9,
                RELEASED.get((arch, depth), ''),
            ))
    return table


def main() -> None:
    print('| model | `config.model` | parameters (M) | GMAC | GFLOP | released weights |')
    print('|---|---|---|---|---|---|')
    for name, fields, parameters, gmac, released in rows():
        print(
            f'| {name} | `{fields}` | {parameters:.2f} | {gmac:.2f} | {2 * gmac:.1f} | '
            f'{released} |'
        )


if __name__ == '__main__':
    main()
