"""The study's batch-size ablation: 128, 256, 512, 1024 with the learning rate scaled linearly
(0.1 at 512), on one model's ``baseline`` recipe.

Command::

    python -m edgejax.sweep --config configs/sweeps/batch_size.py:repvgg_a2 \
        --study-dir runs/batch_size_repvgg_a2
"""

from edgejax.sweep import integer, sweep_config
from edgejax.train.recipes import MODEL_TRAITS


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(
            f"batch_size.py needs a model: one of {', '.join(MODEL_TRAITS)}, got {arg!r}"
        )
    s = sweep_config()
    s.name = f"batch_size_{arg}"
    s.description = f"global batch size with linear lr scaling on {arg}"
    s.base = f"configs/{arg}.py:baseline"
    s.fixed = (
        ("optimizer.lr", 0.1),
        ("optimizer.lr_base_batch", 512),
        ("optimizer.lr_scaling", "linear"),
    )
    s.space = (integer("global_batch_size", 128, 1024, log=True, grid=[128, 256, 512, 1024]),)
    s.sampler = "grid"
    s.pruner = "none"
    return s
