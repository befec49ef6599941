"""Knowledge distillation's two knobs, temperature and loss weight, on one model's ``optimized``
recipe, distilled from a stronger teacher (default: ConvNeXt-T with timm's ImageNet weights).

Command::

    python -m edgejax.sweep --config configs/sweeps/distill.py:mobilenetv3_large_100 \
        --study-dir runs/distill_mnv3 --group-size 6
    # another teacher: --config.distill.teacher=NAME with --config.distill.pretrained=FILE|hub,
    # or --config.distill.checkpoint=RUN (a run of edgejax.train; then pretrained="")

Temperature and weight are per-trial values: the six trials of the grid share one compiled step
and one teacher forward per batch when run as one group (``--group-size 6``).
"""

from edgejax.sweep import categorical, sweep_config
from edgejax.train.recipes import MODEL_TRAITS


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(f"distill.py needs a model: one of {', '.join(MODEL_TRAITS)}, got {arg!r}")
    s = sweep_config()
    s.name = f"distill_{arg}"
    s.description = f"distillation temperature / weight on {arg}"
    s.base = f"configs/{arg}.py:optimized"
    teacher = "convnext_tiny" if arg != "convnext_tiny" else "tf_efficientnetv2_s"
    s.fixed = (("distill.teacher", teacher), ("distill.pretrained", "hub"))
    s.space = (
        categorical("distill.temperature", [1.0, 2.0, 4.0]),
        categorical("distill.alpha", [0.5, 0.9]),
    )
    s.sampler = "grid"
    s.pruner = "none"
    return s
