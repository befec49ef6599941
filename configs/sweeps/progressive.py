"""Progressive learning (EfficientNetV2) on one model's ``optimized`` recipe: the number of
stages, the first stage's image size, and how far RandAugment starts below the recipe's
magnitude.

Command::

    python -m edgejax.sweep --config configs/sweeps/progressive.py:efficientnetv2_s \
        --study-dir runs/progressive_effv2 --n-trials 12

Stages and start size are shapes (trials that differ there train in different groups); the
start magnitude is a per-trial value. The final stage trains, and every evaluation runs, at the
recipe's image size.
"""

from edgejax.sweep import categorical, sweep_config, uniform
from edgejax.train.recipes import MODEL_TRAITS


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(
            f"progressive.py needs a model: one of {', '.join(MODEL_TRAITS)}, got {arg!r}"
        )
    s = sweep_config()
    s.name = f"progressive_{arg}"
    s.description = f"progressive learning stages / start size / start magnitude on {arg}"
    s.base = f"configs/{arg}.py:optimized"
    s.space = (
        categorical("progressive.stages", [2, 3, 4]),
        categorical("progressive.start_size", [128, 160, 192]),
        uniform("progressive.start_ra_magnitude", 0.0, 9.0),
    )
    s.sampler = "tpe"
    s.pruner = "none"
    s.n_trials = 12
    return s
