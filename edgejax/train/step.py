"""The pure step functions: ``train_step(state, batch) -> (state, metrics)`` and
``eval_step(state, batch) -> sums``.

They are plain functions of arrays (the model is ``nnx.merge``d inside), jitted by the loop with
donated state and fixed shardings (see :func:`jit_train_step`). Batch-level augmentation
(RandAugment, random erasing, Mixup / CutMix, label smoothing) runs here, on the device, keyed by
``fold_in(state.rng, state.step)`` so that it is independent of the device count and of resuming.
The same step serves one trial or, called once per trial (or ``jax.vmap``-ed), a trial group.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from .state import ModelDef, TrainState, merge, split_back

# optax >= 0.2.5 has optax.tree.norm; optax.global_norm (deprecated since) for older ones
_global_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm

__all__ = [
    "make_train_step",
    "make_eval_step",
    "cross_entropy",
    "topk_correct",
    "augment_batch",
    "batch_key",
    "input_digest",
]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def cross_entropy(logits, targets):
    """Mean soft-target cross entropy in float32. ``targets``: [B, C] probabilities."""
    return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))


def topk_correct(logits, labels, k: int):
    """[B] bool: label among the ``k`` largest logits."""
    k = min(k, logits.shape[-1])
    top = jax.lax.top_k(logits, k)[1]
    return jnp.any(top == labels[:, None], axis=-1)


def batch_key(rng_data, step):
    """The key of step ``step``'s batch-level augmentation (``rng_data``: a state's ``rng``)."""
    return jax.random.fold_in(jax.random.wrap_key_data(rng_data), step)


def input_digest(x):
    """uint32 [B]: a digest of each sample's exact bits (the input the model is given), to tell
    whether two programs fed a model the same batch."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32).reshape(x.shape[0], -1)
    weights = (jnp.arange(bits.shape[1], dtype=jnp.uint32) * jnp.uint32(2654435761)) | jnp.uint32(1)
    return jnp.sum(bits * weights, axis=1, dtype=jnp.uint32)


def augment_batch(config, features, hp, num_classes, mean, std, rng, images, labels):
    """The train step's batch-level augmentation (see :func:`_augment`): what the model is fed
    at a step, for tools that must see the same inputs (the distillation cache)."""
    return _augment(config, features, hp, num_classes, mean, std, rng, images, labels)


def _augment(config, features, hp, num_classes, mean, std, rng, images, labels):
    """uint8 images [B, H, W, 3], int labels [B] -> normalised float images, soft targets [B, C].

    What runs is fixed by ``features``; how is read from ``hp`` (float32 arrays), so a trial that
    has a feature off runs it at probability 0 (an exact identity)."""
    from edgejax.data import augment  # imported late: the data package may be swapped in tests

    dtype = _DTYPES[config.dtype]
    k_ra, k_erase, k_mix = jax.random.split(rng, 3)
    if features.rand_augment:
        images = augment.rand_augment(
            k_ra,
            images,
            num_ops=features.ra_max_ops,
            magnitude=hp["ra_magnitude"],
            magnitude_std=hp["ra_magnitude_std"],
            prob=hp["ra_prob"],
            increasing=config.augment.ra_increasing,
            active_ops=hp["ra_num_ops"],
        )
    x = augment.normalize(images, mean, std, dtype)
    if features.random_erasing:
        x = augment.random_erasing(k_erase, x, prob=hp["random_erasing"])
    if features.mix:
        x, targets = augment.mixup_cutmix(
            k_mix,
            x,
            labels,
            mixup_alpha=hp["mixup_alpha"],
            cutmix_alpha=hp["cutmix_alpha"],
            switch_prob=hp["switch_prob"],
            prob=hp["mix_prob"],
            label_smoothing=hp["label_smoothing"],
            num_classes=num_classes,
        )
        x = x.astype(dtype)
    else:
        targets = augment.one_hot_smooth(labels, num_classes, hp["label_smoothing"])
    return x, targets.astype(jnp.float32)


def make_train_step(
    config,
    mdef: ModelDef,
    tx: optax.GradientTransformation,
    total_steps: int,
    mean,
    std,
    features=None,
    teacher=None,
    cached: bool = False,
) -> Callable:
    """Build ``train_step(state, batch[, teacher_weights]) -> (state, metrics)``.

    ``batch``: {"image": uint8 [B, H, W, 3], "label": int32 [B]} (the global batch); any image
    size (a progressive run's stages call the step at theirs: one compiled program each).
    ``teacher``: a :class:`~edgejax.distill.TeacherDef` to distill from; the step then takes the
    teacher's weights as a third argument, runs it on the augmented batch and mixes the
    distillation loss in with ``hparams["distill_alpha"]`` and ``["distill_temperature"]``
    (metrics gain ``distill_loss``). With ``cached``, the teacher does not run: its sparse
    targets come in the batch (``kd_values`` / ``kd_indices`` / ``kd_lse`` / ``kd_digest``,
    :mod:`edgejax.distill.cache`), and metrics gain ``cache_mismatch``, the samples whose input
    differs from the one the teacher saw when the cache was written.
    Every hyperparameter a trial may change is read from ``state.hparams``; ``features``
    (:class:`~edgejax.train.hparams.Features`, default: the config's own) fix what is computed.
    A non-finite loss or gradient norm (or ``state.active`` False) leaves the state unchanged
    and sets ``active`` False: one trial of a group stops without touching the others.
    metrics: loss, top1 (train, against the un-mixed labels), lr, grad_norm, param_norm,
    update_norm, all float32 scalars.
    """
    from edgejax.layers import train_rates

    from .hparams import Features
    from .optim import schedule_value, set_hyperparams

    features = features or Features.of([config])
    accum = int(config.optimizer.grad_accum_steps)
    ema_warmup = bool(config.ema.warmup)
    num_classes = mdef.num_classes
    schedule_name = config.schedule.name
    built = dict(
        built_drop_path=float(config.model.drop_path_rate),
        built_dropout=float(config.model.drop_rate),
    )

    def loss_fn(params, batch_stats, model_state, x, targets, hp, t_logits):
        model = merge(mdef, params, batch_stats, model_state, train=True)
        with train_rates(model, drop_path=hp["drop_path_rate"], dropout=hp["drop_rate"], **built):
            logits = model(x)
        loss = cross_entropy(logits, targets)
        kd = jnp.zeros((), jnp.float32)
        if teacher is not None:
            from edgejax.distill import distill_loss

            # t_logits: the teacher's logits, or (cached) its probabilities at the temperature
            kd = distill_loss(
                logits, t_logits, hp["distill_temperature"], hard=teacher.hard, probs=cached
            )
            loss = (1.0 - hp["distill_alpha"]) * loss + hp["distill_alpha"] * kd
        batch_stats, model_state = split_back(model)
        return loss, (batch_stats, model_state, logits.astype(jnp.float32), kd)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch, teacher_weights=None):
        hp = state.hparams
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        labels = batch["label"].astype(jnp.int32)
        x, targets = _augment(
            config, features, hp, num_classes, mean, std, rng, batch["image"], labels
        )
        t_logits = mismatch = None
        if cached:
            from edgejax.distill.cache import sparse_probs

            t_logits = sparse_probs(batch, hp["distill_temperature"], num_classes)
            mismatch = jnp.sum(input_digest(x) != batch["kd_digest"].astype(jnp.uint32))
        elif teacher is not None:
            from edgejax.distill import teacher_logits

            # the teacher sees the student's augmented (and mixed) batch, in its own statistics
            t_logits = teacher_logits(teacher, teacher_weights, x, mean, std)
        if accum == 1:
            (loss, (batch_stats, model_state, logits, kd)), grads = grad_fn(
                state.params, state.batch_stats, state.model_state, x, targets, hp, t_logits
            )
            correct = topk_correct(logits, labels, 1)
        else:
            # Micro-batch a takes samples a, a + A, a + 2A, ...: every device holds its share of
            # every micro-batch, so the work stays balanced under a batch-sharded layout.
            def micro(t):
                return t.reshape((t.shape[0] // accum, accum) + t.shape[1:]).swapaxes(0, 1)

            def body(carry, mb):
                g_sum, l_sum, kd_sum, bs, ms = carry
                (l, (bs, ms, lg, kd)), g = grad_fn(state.params, bs, ms, mb[0], mb[1], hp, mb[3])
                g_sum = jax.tree.map(jnp.add, g_sum, g)
                return (g_sum, l_sum + l, kd_sum + kd, bs, ms), topk_correct(lg, mb[2], 1)

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            zero = jnp.zeros((), jnp.float32)
            (grads, loss, kd, batch_stats, model_state), correct = jax.lax.scan(
                body,
                (zeros, zero, zero, state.batch_stats, state.model_state),
                (
                    micro(x),
                    micro(targets),
                    micro(labels),
                    None if t_logits is None else micro(t_logits),
                ),
            )
            grads = jax.tree.map(lambda g: g / accum, grads)
            loss, kd = loss / accum, kd / accum
        lr = schedule_value(schedule_name, state.step, hp, total_steps)
        opt_state = set_hyperparams(state.opt_state, lr, hp)
        updates, opt_state = tx.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params, ema_bs = state.ema_params, state.ema_batch_stats
        if features.ema:
            d = hp["ema_decay"]
            if ema_warmup:
                t = state.step.astype(jnp.float32) + 1.0
                d = jnp.minimum(d, (1.0 + t) / (10.0 + t))
            blend = lambda e, p: e * d + p * (1.0 - d)  # noqa: E731
            ema_params = jax.tree.map(blend, ema_params, params)
            ema_bs = jax.tree.map(blend, ema_bs, batch_stats)
        grad_norm = _global_norm(grads).astype(jnp.float32)
        loss = loss.astype(jnp.float32)
        ok = state.active & jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
        metrics = {
            "loss": loss,
            "top1": jnp.mean(correct.astype(jnp.float32)),
            "lr": jnp.asarray(lr, jnp.float32),
            "grad_norm": grad_norm,
            "update_norm": _global_norm(updates).astype(jnp.float32),
            "param_norm": _global_norm(params).astype(jnp.float32),
        }
        if teacher is not None:
            metrics["distill_loss"] = kd.astype(jnp.float32)
        if cached:
            metrics["cache_mismatch"] = mismatch.astype(jnp.float32)
        new_state = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            batch_stats=keep(batch_stats, state.batch_stats),
            model_state=keep(model_state, state.model_state),
            opt_state=keep(opt_state, state.opt_state),
            ema_params=keep(ema_params, state.ema_params),
            ema_batch_stats=keep(ema_bs, state.ema_batch_stats),
            active=ok,
        )
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
