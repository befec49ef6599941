"""The pure step functions: ``train_step(state, batch) -> (state, metrics)`` and
``eval_step(state, batch) -> sums``.

They are plain functions of arrays (the model is ``nnx.merge``d inside), jitted by the loop with
donated state and fixed shardings (see :func:`jit_train_step`). Batch-level augmentation
(RandAugment, random erasing, Mixup / CutMix, label smoothing) runs here, on the device, keyed by
``fold_in(state.rng, state.step)`` so that it is independent of the device count and of resuming.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from .state import ModelDef, TrainState, merge, split_back

# optax >= 0.2.5 has optax.tree.norm; optax.global_norm (deprecated since) for older ones
_global_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm

__all__ = ["make_train_step", "make_eval_step", "cross_entropy", "topk_correct"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def cross_entropy(logits, targets):
    """Mean soft-target cross entropy in float32. ``targets``: [B, C] probabilities."""
    return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))


def topk_correct(logits, labels, k: int):
    """[B] bool: label among the ``k`` largest logits."""
    k = min(k, logits.shape[-1])
    top = jax.lax.top_k(logits, k)[1]
    return jnp.any(top == labels[:, None], axis=-1)


def _augment(config, num_classes, mean, std, rng, images, labels):
    """uint8 images [B, H, W, 3], int labels [B] -> normalised float images, soft targets [B, C]."""
    from edgejax.data import augment  # imported late: the data package may be swapped in tests
    a = config.augment
    dtype = _DTYPES[config.dtype]
    k_ra, k_erase, k_mix = jax.random.split(rng, 3)
    if a.rand_augment:
        images = augment.rand_augment(k_ra, images, num_ops=a.ra_num_ops, magnitude=a.ra_magnitude,
                                      magnitude_std=a.ra_magnitude_std, prob=a.ra_prob,
                                      increasing=a.ra_increasing)
    x = augment.normalize(images, mean, std, dtype)
    if a.random_erasing > 0:
        x = augment.random_erasing(k_erase, x, prob=a.random_erasing)
    if a.mixup_alpha > 0 or a.cutmix_alpha > 0:
        x, targets = augment.mixup_cutmix(
            k_mix, x, labels, mixup_alpha=a.mixup_alpha, cutmix_alpha=a.cutmix_alpha,
            switch_prob=a.switch_prob, prob=a.mix_prob, label_smoothing=a.label_smoothing,
            num_classes=num_classes)
        x = x.astype(dtype)
    else:
        targets = augment.one_hot_smooth(labels, num_classes, a.label_smoothing)
    return x, targets.astype(jnp.float32)


def make_train_step(config, mdef: ModelDef, tx: optax.GradientTransformation, schedule: Callable,
                    mean, std) -> Callable:
    """Build ``train_step(state, batch) -> (state, metrics)``.

    ``batch``: {"image": uint8 [B, H, W, 3], "label": int32 [B]} (the global batch).
    metrics: loss, top1 (train, against the un-mixed labels), lr, grad_norm, param_norm,
    update_norm, all float32 scalars.
    """
    accum = int(config.optimizer.grad_accum_steps)
    ema_decay = float(config.ema.decay)
    ema_warmup = bool(config.ema.warmup)
    num_classes = mdef.num_classes

    def loss_fn(params, batch_stats, model_state, x, targets):
        model = merge(mdef, params, batch_stats, model_state, train=True)
        logits = model(x)
        loss = cross_entropy(logits, targets)
        batch_stats, model_state = split_back(model)
        return loss, (batch_stats, model_state, logits.astype(jnp.float32))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        labels = batch["label"].astype(jnp.int32)
        x, targets = _augment(config, num_classes, mean, std, rng, batch["image"], labels)
        if accum == 1:
            (loss, (batch_stats, model_state, logits)), grads = grad_fn(
                state.params, state.batch_stats, state.model_state, x, targets)
            correct = topk_correct(logits, labels, 1)
        else:
            # Micro-batch a takes samples a, a + A, a + 2A, ...: every device holds its share of
            # every micro-batch, so the work stays balanced under a batch-sharded layout.
            def micro(t):
                return t.reshape((t.shape[0] // accum, accum) + t.shape[1:]).swapaxes(0, 1)

            def body(carry, mb):
                g_sum, l_sum, bs, ms = carry
                (l, (bs, ms, lg)), g = grad_fn(state.params, bs, ms, mb[0], mb[1])
                g_sum = jax.tree.map(jnp.add, g_sum, g)
                return (g_sum, l_sum + l, bs, ms), topk_correct(lg, mb[2], 1)

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (grads, loss, batch_stats, model_state), correct = jax.lax.scan(
                body, (zeros, jnp.zeros((), jnp.float32), state.batch_stats, state.model_state),
                (micro(x), micro(targets), micro(labels)))
            grads = jax.tree.map(lambda g: g / accum, grads)
            loss = loss / accum
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params, ema_bs = state.ema_params, state.ema_batch_stats
        if ema_decay > 0:
            d = jnp.asarray(ema_decay, jnp.float32)
            if ema_warmup:
                t = state.step.astype(jnp.float32) + 1.0
                d = jnp.minimum(d, (1.0 + t) / (10.0 + t))
            blend = lambda e, p: e * d + p * (1.0 - d)  # noqa: E731
            ema_params = jax.tree.map(blend, ema_params, params)
            ema_bs = jax.tree.map(blend, ema_bs, batch_stats)
        metrics = {
            "loss": loss.astype(jnp.float32),
            "top1": jnp.mean(correct.astype(jnp.float32)),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
            "grad_norm": _global_norm(grads).astype(jnp.float32),
            "update_norm": _global_norm(updates).astype(jnp.float32),
            "param_norm": _global_norm(params).astype(jnp.float32),
        }
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  model_state=model_state, opt_state=opt_state,
                                  ema_params=ema_params, ema_batch_stats=ema_bs)
        return new_state, metrics

    return train_step


def make_eval_step(config, mdef: ModelDef, mean, std) -> Callable:
    """Build ``eval_step(params, batch_stats, model_state, batch) -> sums``.

    ``batch`` adds "mask" (bool [B], False on padding). Returns sums over valid samples:
    loss, top1, top5 (counts) and count, so that the loop divides once at the end.
    """
    from edgejax.data import augment
    dtype = _DTYPES[config.dtype]

    def eval_step(params, batch_stats, model_state, batch):
        model = merge(mdef, params, batch_stats, model_state, train=False)
        x = augment.normalize(batch["image"], mean, std, dtype)
        logits = model(x).astype(jnp.float32)
        labels = batch["label"].astype(jnp.int32)
        mask = batch["mask"].astype(jnp.float32)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return {
            "loss": jnp.sum(losses * mask),
            "top1": jnp.sum(topk_correct(logits, labels, 1) * mask),
            "top5": jnp.sum(topk_correct(logits, labels, 5) * mask),
            "count": jnp.sum(mask),
        }

    return eval_step
