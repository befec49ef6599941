"""The study's warmup ablation: no warmup (as the study's code) vs 5 linear warmup epochs from
lr 1e-6 (as its README), on one model's ``baseline`` recipe.

Command::

    python -m edgejax.sweep --config configs/sweeps/warmup.py:repvgg_a2 \
        --study-dir runs/warmup_repvgg_a2
"""

from edgejax.sweep import presets, sweep_config
from edgejax.train.recipes import MODEL_TRAITS

WARMUP = {
    "off": {"schedule.warmup_epochs": 0.0, "schedule.warmup_steps": 0},
    "on": {"schedule.warmup_epochs": 5.0, "schedule.warmup_init_lr": 1e-6},
}


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(f"warmup.py needs a model: one of {', '.join(MODEL_TRAITS)}, got {arg!r}")
    s = sweep_config()
    s.name = f"warmup_{arg}"
    s.description = f"warmup off / on on {arg}"
    s.base = f"configs/{arg}.py:baseline"
    s.space = (presets("warmup", WARMUP),)
    s.sampler = "grid"
    s.pruner = "none"
    return s
