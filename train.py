"""Trains a 3D ResNet: flags, distributed set-up and logging around `training.train_and_evaluate`.

    python train.py --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101

Any config field can be overridden, e.g. `--config.batch_size=64`. Running the same command
again resumes from the workdir's latest checkpoint; SIGTERM or Ctrl-C saves one and stops.

Multi-process (one process per host, each feeding its local devices): pass
`--coordinator_address=host0:1234 --num_processes=N --process_id=i` (or set
JAX_COORDINATOR_ADDRESS), or `--distributed` where JAX detects the cluster (Slurm, Open MPI,
Cloud TPU).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

# JAX, TensorFlow and the package are imported inside the functions that use them: the dataset
# build's worker processes are spawned, and re-import this script before they start.

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, TensorBoard events and reports.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
flags.DEFINE_bool('distributed', False, 'Initialise jax.distributed from the cluster environment.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-process runs).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
flags.DEFINE_integer('process_id', None, 'Index of this process (multi-process runs).')
flags.mark_flags_as_required(['config', 'workdir'])

_OVERRIDE = re.compile(r'^--?(config\.[^=\s]+)')


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with unknown `--config.*` fields named instead of a traceback."""
    try:
        return FLAGS(list(argv))
    except (AttributeError, KeyError):
        from r3d_jax import defaults

        overrides = [m.group(1) for arg in argv[1:] if (m := _OVERRIDE.match(arg))]
        unknown = defaults.unknown_fields(overrides) or overrides
        sys.exit(
            f'FATAL: unknown config field(s) on the command line: {", ".join(unknown)}. '
            'Every field is defined, with a comment, in r3d_jax/defaults.py.'
        )
    except flags.Error as error:
        sys.exit(f'FATAL Flags parsing error: {error}\nPass --helpshort or --helpfull for help.')


def initialize_distributed() -> None:
    """Joins a multi-process run when the flags or the environment describe one."""
    explicit = FLAGS.coordinator_address or FLAGS.num_processes or FLAGS.process_id is not None
    if not (FLAGS.distributed or explicit or 'JAX_COORDINATOR_ADDRESS' in os.environ):
        return
    import jax

    # The CPU backend needs a collectives implementation to span processes.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    import jax
    import tensorflow as tf

    from r3d_jax import defaults, training

    # TensorFlow only feeds the input pipeline: keep it off the GPUs, which belong to JAX.
    tf.config.set_visible_devices([], 'GPU')
    initialize_distributed()
    logging.info('JAX process %d of %d', jax.process_index(), jax.process_count())
    logging.info('JAX local devices: %r', jax.local_devices())
    try:
        training.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except defaults.ConfigError as error:
        sys.exit(f'FATAL config error: {error}')


if __name__ == '__main__':
    app.run(main, flags_parser=parse_flags)
