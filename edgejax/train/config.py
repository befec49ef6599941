"""The training config schema: defaults, validation and resolution.

Every ``configs/<name>.py`` starts from :func:`base_config` and changes values; it never adds keys,
so the schema here is the single list of what a run can be told. ``validate`` rejects keys the
schema does not know (naming them, with the closest known key) and values out of range, before
anything compiles.
"""

from __future__ import annotations

import difflib
import os

import ml_collections

__all__ = [
    "base_config",
    "validate",
    "lr_for_batch",
    "data_seed",
    "resolve_dtype",
    "ConfigError",
    "IMAGENET_HELP",
]

IMAGENET_HELP = (
    "Point the run at ImageNet with one of:\n"
    "  --config.data.dataset=/path/to/imagenet       (ImageFolder: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)\n"
    "  --config.data.dataset=/path/to/arrayrecord    (prepared with edgejax.data; train/ and val/ shards)\n"
    "  --config.data.dataset=tfds:imagenet2012       (needs tensorflow-datasets and a built dataset)\n"
    "or set the environment variable EDGEJAX_IMAGENET to one of these."
)


class ConfigError(ValueError):
    """A config value or key that cannot work; the message names it."""


def base_config() -> ml_collections.ConfigDict:
    """All keys a training config may have, with defaults (a small CPU-friendly run)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.dtype = "float32"  # compute dtype: float32 | bfloat16 | auto (parameters stay float32)

    c.model = ml_collections.ConfigDict()
    c.model.name = "mobilenetv3_small_050"
    c.model.drop_rate = 0.0  # classifier dropout
    c.model.drop_path_rate = 0.0  # stochastic depth
    c.model.pretrained = ""  # "" = random init; a .safetensors path; "hub" = timm weights

    c.data = ml_collections.ConfigDict()
    c.data.dataset = (
        "digits"  # digits | ImageFolder path | ArrayRecord dir | tfds:<name> | imagenet
    )
    c.data.train_split = "train"
    c.data.eval_split = "val"
    c.data.image_size = 0  # 0 = the model's input size
    c.data.eval_image_size = 0  # 0 = image_size
    c.data.crop_pct = 0.0  # 0 = the model's crop_pct
    c.data.interpolation = ""  # "" = the model's interpolation
    c.data.mean = ()  # () = the model's mean
    c.data.std = ()
    c.data.scale = (0.08, 1.0)  # RandomResizedCrop area range
    c.data.ratio = (3 / 4, 4 / 3)
    c.data.hflip = 0.5
    c.data.workers = 0  # Grain worker processes (0 = in the main process)
    c.data.seed = -1  # data order and crops; -1 = seed (trials of a group share it)

    c.global_batch_size = 128
    c.num_epochs = 1.0
    c.num_steps = 0  # > 0 overrides num_epochs

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"  # sgd | adamw | lamb | lion | rmsprop_tf
    c.optimizer.lr = 0.1  # at batch size lr_base_batch (scaled by lr_scaling)
    c.optimizer.lr_base_batch = 512
    c.optimizer.lr_scaling = "linear"  # linear | sqrt | none
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.weight_decay = 0.0
    c.optimizer.b1 = 0.9  # adamw / lamb / lion
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.rms_decay = 0.9  # rmsprop_tf
    c.optimizer.clip_grad_norm = 0.0  # 0 = off
    c.optimizer.grad_accum_steps = 1
    # Substrings of parameter paths never decayed, in addition to every 0/1-D parameter (biases,
    # norm scales, layer scale).
    c.optimizer.no_decay = (
        "attention_biases",
        "attention_bias",
        "rel_pos",
        "pos_embed",
        "layer_scale",
        "gamma",
        "cls_token",
    )

    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "cosine"  # cosine | step | linear | constant
    c.schedule.warmup_epochs = 0.0
    c.schedule.warmup_steps = 0  # > 0 overrides warmup_epochs
    c.schedule.warmup_init_lr = 0.0  # absolute lr at step 0 of warmup
    c.schedule.min_lr = 0.0  # absolute floor of cosine / linear decay
    c.schedule.decay_epochs = 2.4  # step schedule: multiply by decay_rate every decay_epochs
    c.schedule.decay_rate = 0.97

    c.augment = ml_collections.ConfigDict()
    c.augment.rand_augment = False
    c.augment.ra_num_ops = 2
    c.augment.ra_magnitude = 9.0
    c.augment.ra_magnitude_std = 0.5
    c.augment.ra_prob = 0.5
    c.augment.ra_increasing = True
    c.augment.mixup_alpha = 0.0
    c.augment.cutmix_alpha = 0.0
    c.augment.mix_prob = 1.0
    c.augment.switch_prob = 0.5
    c.augment.label_smoothing = 0.0
    c.augment.random_erasing = 0.0

    c.ema = ml_collections.ConfigDict()
    c.ema.decay = 0.0  # 0 = no EMA; e.g. 0.9998
    c.ema.warmup = True  # decay = min(decay, (1 + t) / (10 + t)), as timm's ModelEmaV3

    # Knowledge distillation from a teacher run in eval mode inside the train step (off while
    # distill.teacher is ""). loss = (1 - alpha) * label loss + alpha * distillation loss, the
    # latter T^2 * KL(teacher || student) at temperature T, or with distill.hard the cross entropy
    # against the teacher's argmax (DeiT's hard distillation).
    c.distill = ml_collections.ConfigDict()
    c.distill.teacher = ""  # a registered model name; "" = no distillation
    c.distill.checkpoint = ""  # the teacher's weights: a training run (workdir) of edgejax.train
    c.distill.pretrained = ""  # ... or timm weights: a .safetensors file, or "hub"
    c.distill.temperature = 1.0
    c.distill.alpha = 0.5  # weight of the distillation loss (the label loss gets 1 - alpha)
    c.distill.hard = False
    c.distill.image_size = 0  # 0 = the teacher's own (its run's image size, else its model's)
    c.distill.mean = ()  # () = the teacher's own (its run's, else its model's)
    c.distill.std = ()
    # A directory written by `python -m edgejax.distill.cache` for this run: the teacher's sparse
    # targets are read from it instead of running the teacher ("" = run the teacher).
    c.distill.cache = ""

    # Progressive learning (EfficientNetV2): the run is cut into `stages` stages of equal epochs;
    # the image size grows linearly from start_size to data.image_size, and RandAugment
    # magnitude, Mixup / CutMix alpha and dropout grow with it from their start_* values to the
    # config's own (-1 = not ramped). One compiled train program per stage; evaluation runs at
    # the final size.
    c.progressive = ml_collections.ConfigDict()
    c.progressive.stages = 0  # 0 or 1 = off
    c.progressive.start_size = 0  # image size of the first stage
    c.progressive.size_multiple = 8  # sizes between the first and last are rounded to this
    c.progressive.batch_sizes = ()  # one per stage; () = global_batch_size in every stage
    c.progressive.start_ra_magnitude = -1.0
    c.progressive.start_mixup_alpha = -1.0
    c.progressive.start_cutmix_alpha = -1.0
    c.progressive.start_drop_rate = -1.0

    c.eval = ml_collections.ConfigDict()
    c.eval.every_epochs = 1.0  # 0 = only at the end
    c.eval.every_steps = 0  # > 0 overrides every_epochs
    c.eval.batch_size = 0  # 0 = global_batch_size
    c.eval.best_metric = "top1"  # the larger of raw / EMA top-1 picks the best checkpoint

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 0  # 0 = at every evaluation and at the end
    c.checkpoint.keep = 2
    c.checkpoint.keep_best = True
    c.checkpoint.async_save = True

    c.log = ml_collections.ConfigDict()
    c.log.every_steps = 20
    c.log.tensorboard = True
    c.log.progress = True
    return c


_CHOICES = {
    "dtype": ("float32", "bfloat16", "auto"),
    "optimizer.name": ("sgd", "adamw", "lamb", "lion", "rmsprop_tf"),
    "optimizer.lr_scaling": ("linear", "sqrt", "none"),
    "schedule.name": ("cosine", "step", "linear", "constant"),
    "eval.best_metric": ("top1", "top5", "loss"),
}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, (dict, ml_collections.ConfigDict)):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def validate(config) -> ml_collections.ConfigDict:
    """Check ``config`` (ConfigDict or nested dict) against the schema; return a locked ConfigDict
    with every key of :func:`base_config` (missing keys take the defaults).

    Raises ``ConfigError`` naming an unknown key (and the closest known one) or a bad value.
    """
    base = base_config()
    known = _flat(base.to_dict())
    given = _flat(
        config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    )
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"Unknown config key {key!r}.{hint}")
    merged = base
    for key, value in given.items():
        node = merged
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if isinstance(known[key], tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config key {key!r}: {e}") from None
    c = merged
    for key, allowed in _CHOICES.items():
        value = _flat(c.to_dict())[key]
        if value not in allowed:
            raise ConfigError(f"config {key}={value!r}: must be one of {', '.join(allowed)}")
    checks = [
        (c.global_batch_size > 0, "global_batch_size must be > 0"),
        (c.num_epochs > 0 or c.num_steps > 0, "num_epochs or num_steps must be > 0"),
        (c.optimizer.lr >= 0, "optimizer.lr must be >= 0"),
        (c.optimizer.grad_accum_steps >= 1, "optimizer.grad_accum_steps must be >= 1"),
        (
            c.global_batch_size % c.optimizer.grad_accum_steps == 0,
            f"global_batch_size {c.global_batch_size} must be divisible by optimizer.grad_accum_steps "
            f"{c.optimizer.grad_accum_steps}",
        ),
        (0 <= c.ema.decay < 1, "ema.decay must be in [0, 1)"),
        (0 <= c.augment.label_smoothing < 1, "augment.label_smoothing must be in [0, 1)"),
        (c.checkpoint.keep >= 1, "checkpoint.keep must be >= 1"),
        (bool(c.model.name), "model.name must be set"),
        (c.distill.temperature > 0, "distill.temperature must be > 0"),
        (0 <= c.distill.alpha <= 1, "distill.alpha must be in [0, 1]"),
        (
            not c.distill.teacher or bool(c.distill.checkpoint or c.distill.pretrained),
            f"distill.teacher {c.distill.teacher!r} needs its weights: distill.checkpoint (a "
            f"training run) or distill.pretrained (a .safetensors file, or hub)",
        ),
        (
            not c.distill.cache or bool(c.distill.teacher),
            "distill.cache is read with the config that wrote it: set its distill.teacher too",
        ),
        (
            not (c.distill.checkpoint and c.distill.pretrained),
            "give distill.checkpoint or distill.pretrained, not both",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"config: {msg}")
    _check_progressive(c)
    c.lock()
    return c


def _check_progressive(c) -> None:
    p = c.progressive
    if p.stages <= 1:
        return
    bad = None
    if p.start_size <= 0:
        bad = "progressive.start_size must be set (> 0) when progressive.stages > 1"
    elif c.data.image_size and p.start_size > c.data.image_size:
        bad = (
            f"progressive.start_size {p.start_size} is larger than data.image_size "
            f"{c.data.image_size} (the last stage's size)"
        )
    elif p.size_multiple < 1:
        bad = "progressive.size_multiple must be >= 1"
    elif c.num_steps > 0:
        bad = "progressive stages are counted in epochs: set num_epochs, not num_steps"
    elif c.num_epochs != int(c.num_epochs) or c.num_epochs < p.stages:
        bad = (
            f"progressive.stages {p.stages} needs a whole number of epochs of at least as many "
            f"(num_epochs={c.num_epochs})"
        )
    elif p.batch_sizes and len(p.batch_sizes) != p.stages:
        bad = (
            f"progressive.batch_sizes has {len(p.batch_sizes)} entries for {p.stages} stages: "
            f"give one per stage, or none"
        )
    elif any(int(b) <= 0 or int(b) % c.optimizer.grad_accum_steps for b in p.batch_sizes):
        bad = (
            f"progressive.batch_sizes {tuple(p.batch_sizes)}: each must be > 0 and divisible by "
            f"optimizer.grad_accum_steps {c.optimizer.grad_accum_steps}"
        )
    elif p.start_drop_rate > 0 and c.model.drop_rate <= 0:
        bad = (
            "progressive.start_drop_rate ramps the classifier dropout to model.drop_rate, "
            "which is 0: set model.drop_rate > 0"
        )
    if bad:
        raise ConfigError(f"config: {bad}")


def resolve_dtype(config, log=None):
    """``config`` with ``dtype`` "auto" made concrete: bfloat16 on GPU / TPU backends, float32 on
    the CPU backend, where XLA runs the bfloat16 train step several times slower. Says which in
    one line (``log``, default stderr); an explicit bfloat16 on a CPU runs as asked, with a note.
    Returns ``config`` itself when nothing changes, else a locked copy."""
    import sys

    import jax

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cpu = jax.default_backend() == "cpu"
    if config.dtype == "bfloat16" and cpu:
        say(
            "edgejax.train: dtype bfloat16 on the CPU backend runs as asked; float32 is usually "
            "about 2-3x faster there (dtype=auto picks it)"
        )
    if config.dtype != "auto":
        return config
    chosen = "float32" if cpu else "bfloat16"
    say(f"edgejax.train: dtype auto -> {chosen} ({jax.default_backend()} backend)")
    c = ml_collections.ConfigDict(config.to_dict())
    c.dtype = chosen
    c.lock()
    return c


def data_seed(config) -> int:
    """The seed of the input pipeline (order, crops, flips): ``data.seed``, else ``seed``."""
    return int(config.data.seed) if config.data.seed >= 0 else int(config.seed)


def lr_for_batch(config) -> float:
    """The peak learning rate for this run: ``optimizer.lr`` scaled from ``lr_base_batch`` to the
    global batch size (linearly, by square root, or not at all)."""
    o = config.optimizer
    ratio = config.global_batch_size / o.lr_base_batch
    if o.lr_scaling == "linear":
        return o.lr * ratio
    if o.lr_scaling == "sqrt":
        return o.lr * ratio**0.5
    return o.lr


def resolve_dataset(spec: str) -> str:
    """Map the placeholder ``"imagenet"`` to ``$EDGEJAX_IMAGENET``; fail fast with how to set it."""
    if spec == "imagenet":
        env = os.environ.get("EDGEJAX_IMAGENET", "")
        if not env:
            raise ConfigError(
                "This config trains on ImageNet, but no ImageNet dataset was given.\n"
                + IMAGENET_HELP
            )
        spec = env
    if not spec:
        raise ConfigError("config.data.dataset is empty.\n" + IMAGENET_HELP)
    if not (spec == "digits" or spec.startswith("tfds:")) and not os.path.exists(spec):
        raise ConfigError(f"Dataset path {spec!r} does not exist.\n" + IMAGENET_HELP)
    return spec
