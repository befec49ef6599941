"""The study's optimizer ablation: SGD (momentum 0.9, lr 0.1 at batch 512, no weight decay, as the
baseline) vs AdamW (lr 1e-3 at batch 512, weight decay 0.05, as the study's optimized recipe for
the transformer / hybrid models), on one model's ``baseline`` recipe.

Command::

    python -m edgejax.sweep --config configs/sweeps/optimizer.py:mobilevitv2_050 \
        --study-dir runs/optimizer_mobilevitv2_050
"""

from edgejax.sweep import presets, sweep_config
from edgejax.train.recipes import MODEL_TRAITS

OPTIMIZERS = {
    "sgd": {
        "optimizer.name": "sgd",
        "optimizer.lr": 0.1,
        "optimizer.momentum": 0.9,
        "optimizer.weight_decay": 0.0,
    },
    "adamw": {
        "optimizer.name": "adamw",
        "optimizer.lr": 1e-3,
        "optimizer.weight_decay": 0.05,
        "optimizer.b1": 0.9,
        "optimizer.b2": 0.999,
    },
}


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(
            f"optimizer.py needs a model: one of {', '.join(MODEL_TRAITS)}, got {arg!r}"
        )
    s = sweep_config()
    s.name = f"optimizer_{arg}"
    s.description = f"SGD vs AdamW on {arg}"
    s.base = f"configs/{arg}.py:baseline"
    s.space = (presets("optimizer", OPTIMIZERS),)
    s.sampler = "grid"
    s.pruner = "none"
    return s
