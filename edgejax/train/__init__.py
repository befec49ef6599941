"""edgejax.train: config-driven training with one jitted, sharded step.

    python -m edgejax.train --config configs/repvgg_a2.py --workdir runs/x --config.optimizer.lr=0.05

    from edgejax.train import run
    summary = run(config, "runs/x", report_fn=lambda epoch, metrics: False)

Pieces: ``config`` (schema, validation), ``optim`` (schedules, optimizers, decay mask), ``state``
(``TrainState``), ``step`` (pure train / eval steps), ``checkpoint`` (orbax), ``logging``,
``loop`` (``run``).
"""
from .config import ConfigError, base_config, validate
from .loop import NonFiniteLossError, Pruned, Run, build, run
from .state import TrainState

__all__ = ["run", "build", "Run", "Pruned", "NonFiniteLossError", "ConfigError", "base_config",
           "validate", "TrainState"]
