"""Learning-rate schedules, the weight-decay mask and the optax optimizer factory.

Everything is built from the config: ``make_schedule(config, steps_per_epoch, total_steps)`` and
``make_optimizer(config, params, schedule)``. Schedules are functions of the optimizer step
(one per train step; gradient accumulation happens inside a step).
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from .config import lr_for_batch

__all__ = ["make_schedule", "make_optimizer", "weight_decay_mask", "path_str"]


def make_schedule(config, steps_per_epoch: int, total_steps: int) -> Callable:
    """``lr(step)``: linear warmup from ``warmup_init_lr`` to the scaled peak, then cosine /
    step (``decay_rate`` every ``decay_epochs``, staircase, as TF) / linear decay to ``min_lr``, or
    constant. Steps count optimizer updates from 0."""
    s = config.schedule
    peak = lr_for_batch(config)
    warmup = s.warmup_steps if s.warmup_steps > 0 else int(round(s.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    init, floor = float(s.warmup_init_lr), float(s.min_lr)
    step_every = max(int(round(s.decay_epochs * steps_per_epoch)), 1)

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        if s.name == "cosine":
            frac = jnp.clip((t - warmup) / decay_steps, 0.0, 1.0)
            after = floor + 0.5 * (peak - floor) * (1.0 + jnp.cos(math.pi * frac))
        elif s.name == "linear":
            frac = jnp.clip((t - warmup) / decay_steps, 0.0, 1.0)
            after = peak + (floor - peak) * frac
        elif s.name == "step":
            after = peak * s.decay_rate ** jnp.floor(jnp.maximum(t - warmup, 0.0) / step_every)
            after = jnp.maximum(after, floor)
        else:
            after = jnp.full((), peak, jnp.float32)
        if warmup > 0:
            during = init + (peak - init) * t / warmup
            return jnp.where(t < warmup, during, after)
        return after

    return schedule


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


def make_optimizer(config, params, schedule: Callable) -> optax.GradientTransformation:
    """The optax chain for ``config.optimizer``: clip -> optimizer (decay masked as above).

    sgd: momentum (optionally Nesterov) with L2 decay added to the gradient (PyTorch SGD).
    adamw / lamb / lion: decoupled decay. rmsprop_tf: timm's RMSpropTF (eps inside the sqrt,
    accumulator initialised to 1, lr folded into the momentum buffer), L2 decay.
    """
    o = config.optimizer
    mask = weight_decay_mask(params, tuple(o.no_decay))
    wd = float(o.weight_decay)
    parts = []
    if o.clip_grad_norm > 0:
        parts.append(optax.clip_by_global_norm(o.clip_grad_norm))
    if o.name == "sgd":
        if wd:
            parts.append(optax.add_decayed_weights(wd, mask))
        parts.append(optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov))
    elif o.name == "adamw":
        parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=wd, mask=mask))
    elif o.name == "lamb":
        parts.append(optax.lamb(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=wd, mask=mask))
    elif o.name == "lion":
        parts.append(optax.lion(schedule, b1=o.b1, b2=o.b2, weight_decay=wd, mask=mask))
    elif o.name == "rmsprop_tf":
        if wd:
            parts.append(optax.add_decayed_weights(wd, mask))
        parts.append(optax.rmsprop(schedule, decay=o.rms_decay, eps=o.eps, initial_scale=1.0,
                                   eps_in_sqrt=True, momentum=o.momentum or None,
                                   nesterov=o.nesterov))
    else:  # validate() rejects other names first
        raise ValueError(f"unknown optimizer {o.name!r}")
    return optax.chain(*parts)
