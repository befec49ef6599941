"""The study's learning-rate ablation: SGD (momentum 0.9) at lr 0.01 ... 0.2 on one model's
``baseline`` recipe (lr given at batch 512, scaled linearly with the batch size).

Command::

    python -m edgejax.sweep --config configs/sweeps/lr.py:repvgg_a2 --study-dir runs/lr_repvgg_a2
    # searched instead of gridded (TPE over log-uniform 0.01-0.2, median pruning):
    python -m edgejax.sweep --config configs/sweeps/lr.py:repvgg_a2 --study-dir runs/lr_tpe \
        --sampler tpe --pruner median --n-trials 12
"""

from edgejax.sweep import loguniform, sweep_config
from edgejax.train.recipes import MODEL_TRAITS


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(f"lr.py needs a model: one of {', '.join(MODEL_TRAITS)}, got {arg!r}")
    s = sweep_config()
    s.name = f"lr_{arg}"
    s.description = f"learning rate (SGD, at batch 512) on {arg}"
    s.base = f"configs/{arg}.py:baseline"
    s.space = (loguniform("optimizer.lr", 0.01, 0.2, grid=[0.01, 0.02, 0.05, 0.1, 0.2]),)
    s.sampler = "grid"
    s.pruner = "none"
    return s
