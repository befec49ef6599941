"""edgejax.sweep: hyperparameter sweeps and ablations on Optuna; each trial a training run.

    python -m edgejax.sweep --config configs/sweeps/augment_stack.py:repvgg_a2 --study-dir runs/aug

    from edgejax.sweep import load_sweep, SweepRunner
    runner = SweepRunner(load_sweep("configs/sweeps/lr.py:repvgg_a2"), "runs/lr",
                         overrides=[("num_epochs", 5)])
    summary = runner.run(n_trials=8)

Pieces: ``space`` (parameter helpers, conditional sampling, grids), ``config`` (sweep configs,
trial configs), ``study`` (the Optuna study, trials, pruning, resume, failures).
"""

from .config import (
    SweepConfigError,
    load_sweep,
    load_train_config,
    parse_overrides,
    sweep_config,
    trial_config,
)
from .space import SpaceError, categorical, cumulative, integer, loguniform, presets, uniform
from .study import (
    SweepInterrupted,
    SweepRunner,
    eval_records,
    open_study,
    read_metrics,
    score_of,
    trial_workdir,
)

__all__ = [
    "SweepRunner",
    "SweepInterrupted",
    "SweepConfigError",
    "SpaceError",
    "load_sweep",
    "load_train_config",
    "parse_overrides",
    "sweep_config",
    "trial_config",
    "categorical",
    "cumulative",
    "integer",
    "loguniform",
    "presets",
    "uniform",
    "eval_records",
    "open_study",
    "read_metrics",
    "score_of",
    "trial_workdir",
]
