"""edgejax.train: config-driven training with one jitted, sharded step.

    python -m edgejax.train --config configs/repvgg_a2.py --workdir runs/x --config.optimizer.lr=0.05

    from edgejax.train import run
    summary = run(config, "runs/x", report_fn=lambda epoch, metrics: False)
    summaries = run_group([config_a, config_b], ["runs/a", "runs/b"])   # K trials at once

Pieces: ``config`` (schema, validation), ``optim`` (schedules, optimizers, decay mask), ``state``
(``TrainState``), ``step`` (pure train / eval steps), ``checkpoint`` (orbax), ``logging``,
``hparams`` (per-trial values, group keys), ``loop`` (``run``, ``run_group``).
"""

from .config import ConfigError, base_config, validate
from .loop import NonFiniteLossError, Pruned, Run, build, run, run_group
from .state import TrainState

__all__ = [
    "run",
    "run_group",
    "build",
    "Run",
    "Pruned",
    "NonFiniteLossError",
    "ConfigError",
    "base_config",
    "validate",
    "TrainState",
]
