"""The study's training recipes (arXiv 2507.23315, ``lcnn-opt``) as config builders.

``paper_config(model, recipe)`` is what every ``configs/<model>.py`` returns:

- ``baseline``: the study's baseline, identical for all models: SGD momentum 0.9, lr 0.1 at batch
  512 scaled linearly, cosine decay per step, 5 warmup epochs, weight decay 0 (as the study's code;
  its README does not say otherwise), RandomResizedCrop + flip only, ImageNet mean/std for every
  model, 224 px, eval resize 256 -> crop 224, 300 epochs.
- ``optimized``: the study's best stack: RandAugment (m9, mstd 0.5) + Mixup 0.8 + CutMix 1.0 +
  label smoothing 0.1 + EMA; AdamW (lr 1e-3 at 512, wd 0.05) for the transformer / hybrid models
  (MobileViT v2, TinyViT), SGD Nesterov (lr 0.1 at 512, wd 5e-5) for the CNNs; the model's own
  mean/std, drop path and dropout.
- ``reference``: the model authors' recipe where the porting spec records it (porting-spec.md §4),
  for comparison with timm's reference accuracy.

Each returns a full config (see ``edgejax.train.config.base_config``) on the ``"imagenet"``
dataset placeholder: set ``EDGEJAX_IMAGENET`` or ``--config.data.dataset=...``.
"""

from __future__ import annotations

from edgejax.layers.constants import IMAGENET_MEAN, IMAGENET_STD

from .config import base_config

__all__ = ["paper_config", "RECIPES", "MODEL_TRAITS"]

RECIPES = ("baseline", "optimized", "reference")

# kind: "cnn" trains with SGD in `optimized`, "transformer" with AdamW.
# drop_rate / drop_path_rate: timm's defaults for ImageNet training of this model.
MODEL_TRAITS = {
    "efficientnetv2_s": dict(kind="cnn", drop_rate=0.2, drop_path_rate=0.2),
    "tf_efficientnetv2_s": dict(kind="cnn", drop_rate=0.2, drop_path_rate=0.2),
    "convnext_tiny": dict(kind="cnn", drop_rate=0.0, drop_path_rate=0.1),
    "mobilevitv2_050": dict(kind="transformer", drop_rate=0.0, drop_path_rate=0.0),
    "mobilevitv2_075": dict(kind="transformer", drop_rate=0.0, drop_path_rate=0.0),
    "mobilevitv2_100": dict(kind="transformer", drop_rate=0.0, drop_path_rate=0.0),
    "mobilenetv3_large_100": dict(kind="cnn", drop_rate=0.2, drop_path_rate=0.0),
    "tiny_vit_21m_224": dict(kind="transformer", drop_rate=0.0, drop_path_rate=0.2),
    "repvgg_a2": dict(kind="cnn", drop_rate=0.0, drop_path_rate=0.0),
}


# The study's cumulative augmentation stack, as (label, overrides) steps: each step adds to the
# ones before it (``edgejax.sweep.cumulative``); the ``optimized`` recipe applies all of them.
AUGMENT_STACK = (
    (
        "+randaugment",
        {
            "augment.rand_augment": True,
            "augment.ra_num_ops": 2,
            "augment.ra_magnitude": 9.0,
            "augment.ra_magnitude_std": 0.5,
        },
    ),
    ("+mixup", {"augment.mixup_alpha": 0.8, "augment.mix_prob": 1.0}),
    ("+cutmix", {"augment.cutmix_alpha": 1.0, "augment.switch_prob": 0.5}),
    ("+label_smoothing", {"augment.label_smoothing": 0.1}),
)


def _common(model: str):
    c = base_config()
    c.unlock()
    c.model.name = model
    c.dtype = "auto"  # bfloat16 on GPU / TPU, float32 on CPU (where bf16 is the slow path)
    c.data.dataset = "imagenet"
    c.data.image_size = 224
    c.data.crop_pct = 0.875
    c.data.workers = 8
    c.global_batch_size = 512
    c.num_epochs = 300.0
    c.optimizer.lr_base_batch = 512
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 5.0
    c.eval.batch_size = 512
    c.checkpoint.keep = 2
    c.log.every_steps = 100
    return c


def _baseline(c):
    c.optimizer.name = "sgd"
    c.optimizer.lr = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 0.0
    c.data.mean = IMAGENET_MEAN
    c.data.std = IMAGENET_STD
    return c


def _optimized(c, model):
    t = MODEL_TRAITS[model]
    c.model.drop_rate = t["drop_rate"]
    c.model.drop_path_rate = t["drop_path_rate"]
    if t["kind"] == "transformer":
        c.optimizer.name = "adamw"
        c.optimizer.lr = 1e-3
        c.optimizer.weight_decay = 0.05
        c.optimizer.clip_grad_norm = 5.0
    else:
        c.optimizer.name = "sgd"
        c.optimizer.lr = 0.1
        c.optimizer.nesterov = True
        c.optimizer.weight_decay = 5e-5
    c.schedule.min_lr = 1e-5
    c.schedule.warmup_init_lr = 1e-6
    for _, overrides in AUGMENT_STACK:
        for key, value in overrides.items():
            section, name = key.split(".")
            c[section][name] = value
    c.ema.decay = 0.9998
    return c


def _reference(c, model):
    """The authors' recipes (porting-spec.md §4), at batch 512 with their lr scaled linearly."""
    o, s, a = c.optimizer, c.schedule, c.augment
    c.model.drop_rate = MODEL_TRAITS[model]["drop_rate"]
    c.model.drop_path_rate = MODEL_TRAITS[model]["drop_path_rate"]
    if "efficientnetv2" in model:
        o.name, o.lr, o.lr_base_batch, o.momentum, o.eps, o.weight_decay = (
            "rmsprop_tf",
            0.256,
            4096,
            0.9,
            1e-3,
            1e-5,
        )
        s.name, s.decay_epochs, s.decay_rate, s.warmup_epochs = "step", 2.4, 0.97, 5.0
        c.num_epochs = 350.0
        a.rand_augment, a.ra_magnitude = True, 10.0
        c.ema.decay = 0.9999
        c.data.image_size = 300 if model.startswith("tf_") else 288
        c.data.crop_pct = 1.0
    elif model.startswith("convnext"):
        o.name, o.lr, o.lr_base_batch, o.weight_decay = "adamw", 4e-3, 4096, 0.05
        s.warmup_epochs = 20.0
        a.rand_augment, a.mixup_alpha, a.cutmix_alpha = True, 0.8, 1.0
        a.label_smoothing, a.random_erasing = 0.1, 0.25
        c.ema.decay = 0.9999
    elif model.startswith("mobilevitv2"):
        o.name, o.lr, o.lr_base_batch, o.weight_decay, o.clip_grad_norm = (
            "adamw",
            2e-3,
            1024,
            0.05,
            10.0,
        )
        s.min_lr, s.warmup_init_lr = 2e-4, 1e-6
        a.rand_augment, a.mixup_alpha, a.cutmix_alpha = True, 0.2, 1.0
        a.label_smoothing, a.random_erasing = 0.1, 0.25
        c.ema.decay = 0.9995
        c.data.image_size, c.data.crop_pct = 256, 0.888
    elif model.startswith("mobilenetv3"):
        o.name, o.lr, o.lr_base_batch, o.momentum, o.eps, o.weight_decay = (
            "rmsprop_tf",
            0.1,
            4096,
            0.9,
            1e-3,
            1e-5,
        )
        s.name, s.decay_epochs, s.decay_rate = "step", 3.0, 0.99
        c.ema.decay = 0.9999
    elif model.startswith("tiny_vit"):
        o.name, o.lr, o.lr_base_batch, o.weight_decay, o.clip_grad_norm = (
            "adamw",
            5e-4,
            512,
            0.05,
            5.0,
        )
        s.warmup_epochs = 20.0
        a.rand_augment, a.mixup_alpha, a.cutmix_alpha = True, 0.8, 1.0
        a.label_smoothing, a.random_erasing = 0.1, 0.25
        c.data.crop_pct = 0.95
    elif model.startswith("repvgg"):
        o.name, o.lr, o.lr_base_batch, o.weight_decay = "sgd", 0.1, 256, 1e-4
        c.num_epochs = 120.0
        s.warmup_epochs = 0.0
    return c


def paper_config(model: str, recipe: str | None = None):
    """The config of ``model`` under ``recipe`` (``baseline`` when None or empty)."""
    recipe = recipe or "baseline"
    if model not in MODEL_TRAITS:
        raise ValueError(f"no study recipe for {model!r}; known: {', '.join(MODEL_TRAITS)}")
    c = _common(model)
    if recipe == "baseline":
        c = _baseline(c)
    elif recipe == "optimized":
        c = _optimized(c, model)
    elif recipe == "reference":
        c = _reference(c, model)
    else:
        raise ValueError(
            f"unknown recipe {recipe!r} for {model}: use one of {', '.join(RECIPES)} "
            f"(e.g. --config=configs/{model}.py:optimized)"
        )
    c.lock()
    return c
