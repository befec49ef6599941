"""The CIFAR-10 tuning study (docs/results/cifar10_study/): ablations and a TPE search on
``configs/cifar10_study.py`` (MobileNetV3-Small 1.0, 1,000 training images, 32 px, 60 epochs),
tuned on the val split carved from the training images.

``arg`` picks the part::

    ablations  one grid of 13 recipes: the baseline, one change from it (peak lr 1e-3 / 1e-2
               instead of 3e-3, batch 32 / 128 with the lr scaled linearly, SGD + Nesterov
               momentum instead of AdamW, 3 warmup epochs), and the cumulative augmentation stack
               +random-resized crops (scale 0.35-1) +RandAugment (m9, 2 ops) +Mixup 0.8
               +CutMix 1.0 +label smoothing 0.1 +random erasing 0.25
    tpe        TPE over the joint space (batch size, optimizer and its lr / wd, warmup, crops,
               RandAugment, Mixup, CutMix, label smoothing, random erasing, EMA), median
               pruning, 24 trials

Commands (trials of one group train at once; ``--group-size`` does not change the results)::

    python -m edgejax.sweep --config configs/sweeps/cifar10_study.py:ablations \\
        --study-dir runs/cifar10_study/ablations --group-size 4
    python -m edgejax.sweep --config configs/sweeps/cifar10_study.py:tpe \\
        --study-dir runs/cifar10_study/tpe --group-size 4
"""

from edgejax.sweep import categorical, cumulative, loguniform, presets, sweep_config, uniform
from edgejax.train.recipes import AUGMENT_STACK

BASE = "configs/cifar10_study.py"
CROPS = {"data.scale": (0.35, 1.0), "data.ratio": (3 / 4, 4 / 3)}
SGD = {
    "optimizer.name": "sgd",
    "optimizer.lr": 0.05,
    "optimizer.nesterov": True,
    "optimizer.weight_decay": 5e-4,
}

STACK = cumulative(
    [
        ("baseline", {}),
        ("+crops", CROPS),
        *AUGMENT_STACK,
        ("+random_erasing", {"augment.random_erasing": 0.25}),
    ]
)

ABLATIONS = {
    "baseline": {},
    "lr_1e-3": {"optimizer.lr": 1e-3},
    "lr_1e-2": {"optimizer.lr": 1e-2},
    "batch_32": {"global_batch_size": 32},
    "batch_128": {"global_batch_size": 128},
    "sgd": SGD,
    "warmup_3": {"schedule.warmup_epochs": 3.0},
    **{k: v for k, v in STACK.items() if k != "baseline"},
}

PARTS = ("ablations", "tpe")


def get_config(arg=None):
    if arg not in PARTS:
        raise ValueError(
            f"cifar10_study.py needs a part: one of {', '.join(PARTS)} "
            f"(e.g. configs/sweeps/cifar10_study.py:ablations), got {arg!r}"
        )
    s = sweep_config()
    s.name = f"cifar10_{arg}"
    s.base = BASE
    if arg == "ablations":
        s.description = "one change at a time from the baseline, and the cumulative stack"
        s.space = (presets("recipe", ABLATIONS),)
        s.sampler, s.pruner = "grid", "none"
        return s
    s.description = "TPE over the joint recipe space"
    s.space = (
        categorical("global_batch_size", [32, 64, 128]),
        categorical("optimizer.name", ["adamw", "sgd"]),
        loguniform("optimizer.lr", 1e-3, 1.5e-2, name="adamw_lr", when={"optimizer.name": "adamw"}),
        loguniform(
            "optimizer.weight_decay", 1e-3, 0.2, name="adamw_wd", when={"optimizer.name": "adamw"}
        ),
        loguniform("optimizer.lr", 0.01, 0.3, name="sgd_lr", when={"optimizer.name": "sgd"}),
        loguniform(
            "optimizer.weight_decay", 1e-5, 2e-3, name="sgd_wd", when={"optimizer.name": "sgd"}
        ),
        uniform("schedule.warmup_epochs", 0.0, 4.0),
        presets(
            "crops",
            {"none": {}, "scale_0.35": CROPS, "scale_0.6": {**CROPS, "data.scale": (0.6, 1.0)}},
        ),
        categorical("augment.rand_augment", [False, True]),
        uniform("augment.ra_magnitude", 3.0, 12.0, when={"augment.rand_augment": True}),
        uniform("augment.mixup_alpha", 0.0, 1.0),
        uniform("augment.cutmix_alpha", 0.0, 1.0),
        uniform("augment.label_smoothing", 0.0, 0.2),
        uniform("augment.random_erasing", 0.0, 0.4),
        categorical("ema.decay", [0.0, 0.99]),
    )
    s.sampler = "tpe"
    s.tpe_startup_trials = 8
    s.pruner = "median"
    s.pruner_startup_trials = 4
    s.pruner_warmup_epochs = 20
    s.n_trials = 24
    return s
