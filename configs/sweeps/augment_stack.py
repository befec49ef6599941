"""The study's cumulative augmentation ablation (arXiv 2507.23315): baseline -> +RandAugment ->
+Mixup -> +CutMix -> +label smoothing, each step adding to the one before, on one model.

Command (``arg`` = one of the nine paper models)::

    python -m edgejax.sweep --config configs/sweeps/augment_stack.py:repvgg_a2 \
        --study-dir runs/augment_stack_repvgg_a2
    # small CPU version (CIFAR-10, 32 px, 6 epochs):
    python -m edgejax.sweep --config configs/sweeps/augment_stack.py:mobilenetv3_large_100 \
        --study-dir runs/aug --set data.dataset=../shared/data/cifar10 --set num_epochs=6 ...
    python -m edgejax.report runs/aug --out report/

Five grid trials on the model's ``baseline`` recipe (SGD, no augmentation beyond crop + flip);
values as the study's ``optimized`` stack: RandAugment m9 mstd 0.5 (2 ops), Mixup alpha 0.8,
CutMix alpha 1.0 (switch prob 0.5), label smoothing 0.1. No pruning: every step runs to the end.
"""

from edgejax.sweep import cumulative, presets, sweep_config
from edgejax.train.recipes import AUGMENT_STACK, MODEL_TRAITS

STACK = cumulative([("baseline", {}), *AUGMENT_STACK])


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(
            f"augment_stack.py needs a model: one of {', '.join(MODEL_TRAITS)} "
            f"(e.g. configs/sweeps/augment_stack.py:repvgg_a2), got {arg!r}"
        )
    s = sweep_config()
    s.name = f"augment_stack_{arg}"
    s.description = f"cumulative augmentation stack on {arg} (baseline recipe)"
    s.base = f"configs/{arg}.py:baseline"
    s.space = (presets("augment_stack", STACK),)
    s.sampler = "grid"
    s.pruner = "none"
    return s
