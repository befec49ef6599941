"""``TrainState``: everything that changes during training, as one pytree of plain arrays.

The model is split once (``nnx.split``) into a static graph definition per mode (train / eval) and
state: parameters, BatchNorm statistics and the rest (the DropPath / dropout RNG streams). The state
is kept as pure nested dicts of arrays (PRNG keys as raw ``uint32`` key data), so it shards,
checkpoints and compares like any pytree; the step functions ``nnx.merge`` inside ``jit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

__all__ = [
    "TrainState",
    "ModelDef",
    "split_model",
    "init_train_state",
    "augment_rng",
    "to_keys",
    "from_keys",
]


@struct.dataclass
class TrainState:
    """step: int32 optimizer steps taken; params / batch_stats / model_state: pure dicts;
    opt_state: optax state; ema_params / ema_batch_stats: EMA weights (None when EMA is off);
    rng: uint32[2] key data for batch-level augmentation (folded with the step); hparams: the
    per-trial hyperparameters as float32 scalars (:mod:`edgejax.train.hparams`); active: False
    once a non-finite loss (or a pruner) froze the run: the step then leaves it unchanged.
    A trial group holds the same fields with a leading trial axis."""

    step: jax.Array
    params: Any
    batch_stats: Any
    model_state: Any
    opt_state: Any
    ema_params: Any
    ema_batch_stats: Any
    rng: jax.Array
    hparams: Any = None
    active: Any = None


@dataclass(frozen=True)
class ModelDef:
    """The static half of a split model: one graph definition per mode and where the keys are."""

    train_graphdef: Any
    eval_graphdef: Any
    key_mask: Any  # bool tree like model_state: True where the leaf is a PRNG key
    num_classes: int


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def from_keys(tree):
    """PRNG key leaves -> raw uint32 key data (checkpointable, shardable)."""

    def data(x):
        if not _is_key(x):
            return x
        if isinstance(x, jax.ShapeDtypeStruct):  # abstract (nnx.eval_shape) models
            return jax.eval_shape(jax.random.key_data, x)
        return jax.random.key_data(x)

    return jax.tree.map(data, tree)


def to_keys(tree, key_mask):
    """Inverse of :func:`from_keys` given the mask of key leaves."""
    return jax.tree.map(lambda x, k: jax.random.wrap_key_data(x) if k else x, tree, key_mask)


def split_model(model: nnx.Module):
    """-> (ModelDef, params, batch_stats, model_state) with pure-dict states."""
    model.train()
    train_gd, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    model.eval()
    eval_gd = nnx.split(model, nnx.Param, nnx.BatchStat, ...)[0]
    rest = nnx.to_pure_dict(rest)
    key_mask = jax.tree.map(_is_key, rest)
    mdef = ModelDef(train_gd, eval_gd, key_mask, int(getattr(model, "num_classes", 0)))
    return (mdef, nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats), from_keys(rest))


def merge(mdef: ModelDef, params, batch_stats, model_state, *, train: bool) -> nnx.Module:
    """Rebuild the model (inside a traced function) from pure-dict states."""
    gd = mdef.train_graphdef if train else mdef.eval_graphdef
    return nnx.merge(
        gd,
        nnx.State(params),
        nnx.State(batch_stats),
        nnx.State(to_keys(model_state, mdef.key_mask)),
    )


def split_back(model: nnx.Module):
    """(batch_stats, model_state) of a merged model after it ran, as pure dicts."""
    _, _, bs, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return nnx.to_pure_dict(bs), from_keys(nnx.to_pure_dict(rest))


def augment_rng(seed):
    """The uint32 key data a run with ``seed`` keys its on-device augmentation with (folded with
    the step: :func:`edgejax.train.step.batch_key`)."""
    return jax.random.key_data(jax.random.key(jnp.asarray(seed, jnp.uint32) ^ np.uint32(0x5EED)))


def init_train_state(
    params, batch_stats, model_state, tx, *, seed, ema: bool, hparams: dict
) -> TrainState:
    """Fresh state at step 0 (call under ``jax.jit`` with ``out_shardings`` to create it placed).
    ``seed`` may be traced (one compiled initialiser serves every trial)."""
    copy = lambda t: jax.tree.map(jnp.array, t)  # noqa: E731  (EMA must not alias the params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        model_state=model_state,
        opt_state=tx.init(params),
        ema_params=copy(params) if ema else None,
        ema_batch_stats=copy(batch_stats) if ema else None,
        rng=augment_rng(seed),
        hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()},
        active=jnp.ones((), bool),
    )
