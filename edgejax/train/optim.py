"""Learning-rate schedules, the weight-decay mask and the optax optimizer factory.

Schedules are functions of the optimizer step and of the per-trial values in
``TrainState.hparams`` (:func:`schedule_value`); the optimizer keeps its hyperparameters in its
state (``optax.inject_hyperparams``), so nothing a trial may change is a compile-time constant.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "make_schedule",
    "schedule_value",
    "make_optimizer",
    "set_hyperparams",
    "weight_decay_mask",
    "path_str",
]


def schedule_value(name: str, step, hp: dict, total_steps: int):
    """The learning rate at optimizer ``step`` from the per-trial values ``hp`` (float32 arrays,
    see :mod:`edgejax.train.hparams`): linear warmup from ``warmup_init_lr`` to ``peak_lr`` over
    ``warmup_steps``, then cosine / step (``decay_rate`` every ``decay_every`` steps, staircase,
    as TF) / linear decay to ``min_lr``, or constant."""
    t = jnp.asarray(step, jnp.float32)
    peak, floor, warmup = hp["peak_lr"], hp["min_lr"], hp["warmup_steps"]
    decay_steps = jnp.maximum(jnp.float32(total_steps) - warmup, 1.0)
    if name == "cosine":
        frac = jnp.clip((t - warmup) / decay_steps, 0.0, 1.0)
        after = floor + 0.5 * (peak - floor) * (1.0 + jnp.cos(math.pi * frac))
    elif name == "linear":
        frac = jnp.clip((t - warmup) / decay_steps, 0.0, 1.0)
        after = peak + (floor - peak) * frac
    elif name == "step":
        after = peak * hp["decay_rate"] ** jnp.floor(
            jnp.maximum(t - warmup, 0.0) / hp["decay_every"]
        )
        after = jnp.maximum(after, floor)
    else:
        after = peak
    during = hp["warmup_init_lr"] + (peak - hp["warmup_init_lr"]) * t / jnp.maximum(warmup, 1.0)
    return jnp.where(t < warmup, during, after)


def make_schedule(config, steps_per_epoch: int, total_steps: int) -> Callable:
    """``lr(step)`` for ``config`` (:func:`schedule_value` at the config's own values). Steps
    count optimizer updates from 0 (gradient accumulation happens inside a step)."""
    from .hparams import hparams

    hp = {k: jnp.float32(v) for k, v in hparams(config, steps_per_epoch, total_steps).items()}
    return lambda step: schedule_value(config.schedule.name, step, hp, total_steps)


def path_str(path) -> str:
    """``('stages', 0, 'conv', 'kernel')`` key path -> ``"stages.0.conv.kernel"``."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def weight_decay_mask(params, no_decay=()) -> object:
    """A bool tree like ``params``: True where weight decay applies.

    Off for every parameter of rank <= 1 (biases, norm scales and shifts, layer scale), and for
    any whose path contains one of the ``no_decay`` substrings (attention-bias tables, position
    embeddings), as timm's ``param_groups_weight_decay`` plus its no-weight-decay lists.
    """

    def decays(path, x):
        name = path_str(path)
        return bool(x.ndim > 1 and not any(s in name for s in no_decay))

    return jax.tree_util.tree_map_with_path(decays, params)


# The optimizer's hyperparameters that live in its state (optax.inject_hyperparams) and are
# written from TrainState.hparams at every step.
OPT_HPARAMS = ("weight_decay", "momentum", "b1", "b2", "eps", "rms_decay", "clip_grad_norm")


def make_optimizer(config, params, features=None) -> optax.GradientTransformation:
    """The optax chain for ``config.optimizer`` (clip -> optimizer, decay masked as above), wrapped
    in ``optax.inject_hyperparams``: learning rate, weight decay, momentum / betas, eps and the
    clip norm are arrays in the optimizer state, so one compiled step serves any values.

    sgd: momentum (optionally Nesterov) with L2 decay added to the gradient (PyTorch SGD).
    adamw / lamb / lion: decoupled decay. rmsprop_tf: timm's RMSpropTF (eps inside the sqrt,
    accumulator initialised to 1, lr folded into the momentum buffer), L2 decay.
    ``features`` (:class:`~edgejax.train.hparams.Features`, default: the config's own) say whether
    clipping, decay and momentum are computed at all.
    """
    from .hparams import Features, hparams

    o = config.optimizer
    f = features or Features.of([config])
    mask = weight_decay_mask(params, tuple(o.no_decay))
    name, nesterov = o.name, bool(o.nesterov)

    def chain(learning_rate, weight_decay, momentum, b1, b2, eps, rms_decay, clip_grad_norm):
        parts = []
        if f.clip:
            parts.append(optax.clip_by_global_norm(clip_grad_norm))
        mom = momentum if f.momentum else None
        if name in ("sgd", "rmsprop_tf") and f.weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay, mask))
        wd = weight_decay if f.weight_decay else 0.0
        if name == "sgd":
            parts.append(optax.sgd(learning_rate, momentum=mom, nesterov=nesterov))
        elif name == "adamw":
            parts.append(
                optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
            )
        elif name == "lamb":
            parts.append(
                optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
            )
        elif name == "lion":
            parts.append(optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=wd, mask=mask))
        elif name == "rmsprop_tf":
            parts.append(
                optax.rmsprop(
                    learning_rate,
                    decay=rms_decay,
                    eps=eps,
                    initial_scale=1.0,
                    eps_in_sqrt=True,
                    momentum=mom,
                    nesterov=nesterov,
                )
            )
        else:  # validate() rejects other names first
            raise ValueError(f"unknown optimizer {name!r}")
        return optax.chain(*parts)

    hp = hparams(config, 1, 1)
    # 0-d arrays (numpy scalars would be taken for static arguments)
    return optax.inject_hyperparams(chain, hyperparam_dtype=jnp.float32)(
        learning_rate=np.zeros((), np.float32), **{k: np.asarray(hp[k]) for k in OPT_HPARAMS}
    )


def set_hyperparams(opt_state, lr, hp: dict):
    """``opt_state`` (of :func:`make_optimizer`) with this step's learning rate and ``hp``."""
    values = dict(opt_state.hyperparams)
    values["learning_rate"] = jnp.asarray(lr, jnp.float32)
    for k in OPT_HPARAMS:
        values[k] = hp[k]
    return opt_state._replace(hyperparams=values)
