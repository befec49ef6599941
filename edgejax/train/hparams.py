"""Hyperparameters as arrays, and what makes trials share one program.

A config splits in three:

- **per-trial values** (:data:`HPARAMS`): learning-rate schedule, weight decay, momentum / betas,
  gradient clip, label smoothing, Mixup / CutMix, RandAugment, random erasing, drop path / dropout
  rates, EMA decay. The train step reads them from ``TrainState.hparams`` as float32 scalars, so
  one compiled step serves any values, and a group of trials holds them as [K] arrays.
- **features** (:class:`Features`): which parts the step computes at all (RandAugment, erasing,
  mixing, EMA, clipping, decay, momentum). A group computes the union of its trials' features; a
  trial whose own config leaves one off runs it at a value that is an exact identity (probability
  0, decay 0, clip at infinity), so its numbers are those it would get alone.
- **group keys**: everything else (model, input size, batch size, optimizer kind, schedule kind,
  run length, data, ...). Trials that differ there cannot share a step: :func:`check_group` names
  the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import ConfigError, _flat, data_seed, lr_for_batch

__all__ = [
    "HPARAMS",
    "DISTILL_HPARAMS",
    "PER_TRIAL_KEYS",
    "Features",
    "hparams",
    "check_group",
    "group_key",
    "total_steps",
]

HPARAMS = (
    "peak_lr",
    "warmup_steps",
    "warmup_init_lr",
    "min_lr",
    "decay_every",
    "decay_rate",
    "weight_decay",
    "momentum",
    "b1",
    "b2",
    "eps",
    "rms_decay",
    "clip_grad_norm",
    "label_smoothing",
    "mixup_alpha",
    "cutmix_alpha",
    "mix_prob",
    "switch_prob",
    "ra_num_ops",
    "ra_magnitude",
    "ra_magnitude_std",
    "ra_prob",
    "random_erasing",
    "drop_path_rate",
    "drop_rate",
    "ema_decay",
)

# Config keys that may differ between the trials of one group (all become HPARAMS or features,
# or only touch the host: the seed, the best-checkpoint metric).
PER_TRIAL_KEYS = frozenset(
    {
        "seed",
        "eval.best_metric",
        "optimizer.lr",
        "optimizer.lr_base_batch",
        "optimizer.lr_scaling",
        "optimizer.momentum",
        "optimizer.weight_decay",
        "optimizer.b1",
        "optimizer.b2",
        "optimizer.eps",
        "optimizer.rms_decay",
        "optimizer.clip_grad_norm",
        "schedule.warmup_epochs",
        "schedule.warmup_steps",
        "schedule.warmup_init_lr",
        "schedule.min_lr",
        "schedule.decay_epochs",
        "schedule.decay_rate",
        "augment.rand_augment",
        "augment.ra_num_ops",
        "augment.ra_magnitude",
        "augment.ra_magnitude_std",
        "augment.ra_prob",
        "augment.mixup_alpha",
        "augment.cutmix_alpha",
        "augment.mix_prob",
        "augment.switch_prob",
        "augment.label_smoothing",
        "augment.random_erasing",
        "model.drop_rate",
        "model.drop_path_rate",
        "ema.decay",
        "distill.temperature",
        "distill.alpha",
        "progressive.start_ra_magnitude",
        "progressive.start_mixup_alpha",
        "progressive.start_cutmix_alpha",
        "progressive.start_drop_rate",
    }
)

# Present in the hyperparameters of a distilled run only (a run without a teacher keeps the
# state it always had, so its checkpoints stay readable).
DISTILL_HPARAMS = ("distill_temperature", "distill_alpha")


def total_steps(config, steps_per_epoch: int) -> int:
    return (
        int(config.num_steps)
        if config.num_steps > 0
        else int(math.ceil(config.num_epochs * steps_per_epoch))
    )


@dataclass(frozen=True)
class Features:
    """The parts of the train step that exist at all (static: they shape the program)."""

    rand_augment: bool = False
    ra_max_ops: int = 0
    random_erasing: bool = False
    mix: bool = False
    ema: bool = False
    clip: bool = False
    weight_decay: bool = False
    momentum: bool = False

    @classmethod
    def of(cls, configs) -> "Features":
        a = [c.augment for c in configs]
        o = [c.optimizer for c in configs]
        p = [c.progressive for c in configs]
        return cls(
            rand_augment=any(x.rand_augment for x in a),
            ra_max_ops=max((int(x.ra_num_ops) for x in a if x.rand_augment), default=0),
            random_erasing=any(x.random_erasing > 0 for x in a),
            # a progressive run may ramp mixing from (or to) an alpha of 0
            mix=any(
                max(x.mixup_alpha, x.cutmix_alpha) > 0
                or (q.stages > 1 and max(q.start_mixup_alpha, q.start_cutmix_alpha) > 0)
                for x, q in zip(a, p)
            ),
            ema=any(c.ema.decay > 0 for c in configs),
            clip=any(x.clip_grad_norm > 0 for x in o),
            weight_decay=any(x.weight_decay > 0 for x in o),
            momentum=any(x.momentum > 0 for x in o),
        )


def hparams(config, steps_per_epoch: int, total: int) -> dict:
    """The per-trial values of ``config`` as float32 numpy scalars (keys: :data:`HPARAMS`).

    Off switches map to exact identities: RandAugment / mixing off -> probability 0, no clip ->
    clip at +inf, no EMA -> decay 0.
    """
    s, o, a = config.schedule, config.optimizer, config.augment
    warmup = s.warmup_steps if s.warmup_steps > 0 else int(round(s.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, max(total - 1, 0))
    mixing = a.mixup_alpha > 0 or a.cutmix_alpha > 0
    values = {
        "peak_lr": lr_for_batch(config),
        "warmup_steps": warmup,
        "warmup_init_lr": s.warmup_init_lr,
        "min_lr": s.min_lr,
        "decay_every": max(int(round(s.decay_epochs * steps_per_epoch)), 1),
        "decay_rate": s.decay_rate,
        "weight_decay": o.weight_decay,
        "momentum": o.momentum,
        "b1": o.b1,
        "b2": o.b2,
        "eps": o.eps,
        "rms_decay": o.rms_decay,
        "clip_grad_norm": o.clip_grad_norm if o.clip_grad_norm > 0 else math.inf,
        "label_smoothing": a.label_smoothing,
        "mixup_alpha": a.mixup_alpha,
        "cutmix_alpha": a.cutmix_alpha,
        "mix_prob": a.mix_prob if mixing else 0.0,
        "switch_prob": a.switch_prob,
        "ra_num_ops": a.ra_num_ops if a.rand_augment else 0,
        "ra_magnitude": a.ra_magnitude,
        "ra_magnitude_std": a.ra_magnitude_std,
        "ra_prob": a.ra_prob if a.rand_augment else 0.0,
        "random_erasing": a.random_erasing,
        "drop_path_rate": config.model.drop_path_rate,
        "drop_rate": config.model.drop_rate,
        "ema_decay": config.ema.decay,
    }
    keys = HPARAMS
    if config.distill.teacher:
        values["distill_temperature"] = config.distill.temperature
        values["distill_alpha"] = config.distill.alpha
        keys = HPARAMS + DISTILL_HPARAMS
    return {k: np.float32(values[k]) for k in keys}


def group_key(config) -> dict:
    """The config values every trial of a group must share (flat ``{key: value}``)."""
    flat = _flat(config.to_dict())
    key = {k: v for k, v in flat.items() if k not in PER_TRIAL_KEYS}
    # A rate > 0 builds DropPath / Dropout layers (and their RNG streams): the rate's value is
    # per trial, whether the layer exists is not.
    # One input pipeline feeds the group: its seed (data.seed, else seed) must agree.
    key["data.seed"] = data_seed(config)
    key["model.drop_rate>0"] = config.model.drop_rate > 0
    key["model.drop_path_rate>0"] = config.model.drop_path_rate > 0
    return key


def check_group(configs) -> None:
    """Raise ``ConfigError`` naming the first key on which a trial differs from the first one."""
    if not configs:
        raise ConfigError("a trial group needs at least one config")
    ref = group_key(configs[0])
    for i, c in enumerate(configs[1:], 1):
        other = group_key(c)
        for k in ref:
            if ref[k] != other[k]:
                raise ConfigError(
                    f"trial {i} cannot join the group of trial 0: {k} differs ({other[k]!r} vs "
                    f"{ref[k]!r}); trials of one group share the model, input size, batch size, "
                    f"optimizer and schedule kind, run length and data"
                    + (
                        "; set data.seed to share one data stream across seeds"
                        if k == "data.seed"
                        else ""
                    )
                )
