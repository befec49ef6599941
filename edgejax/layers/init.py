"""Initialisers with the ``f(key, shape, dtype)`` signature that draw with numpy when the key is
concrete.

Eager ``jax.random`` compiles one XLA program per distinct shape, so building a model eagerly
costs a compile per layer (minutes for a large model on a small CPU); numpy seeded from the key's
bits is deterministic in the key and costs nothing to compile. Under a trace (``jax.jit`` /
``nnx.eval_shape`` of a constructor) they fall back to ``jax.random``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "normal",
    "uniform",
    "truncated_normal",
    "conv_fan_out_normal",
    "constant",
    "numpy_generator",
]


def numpy_generator(key) -> np.random.Generator | None:
    """A numpy Generator seeded by a concrete JAX key, or None under a trace."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if isinstance(data, jax.core.Tracer):
        return None
    return np.random.default_rng(np.asarray(data, dtype=np.uint32).ravel().tolist())


def normal(mean: float = 0.0, std: float = 1.0):
    def init(key, shape, dtype=jnp.float32):
        g = numpy_generator(key)
        if g is None:
            return mean + std * jax.random.normal(key, shape, dtype)
        return jnp.asarray(g.normal(mean, std, shape), dtype)

    return init


def truncated_normal(std: float = 0.02, a: float = -2.0, b: float = 2.0):
    """N(0, std) truncated to the absolute interval [a, b], as timm's ``trunc_normal_(std=.02)``
    (whose default bounds +-2 are absolute, so with std 0.02 it is in effect N(0, 0.02))."""
    lo, hi = a / std, b / std

    def init(key, shape, dtype=jnp.float32):
        g = numpy_generator(key)
        if g is None:
            return std * jax.random.truncated_normal(key, lo, hi, shape, dtype)
        x = g.standard_normal(shape, dtype=np.float32)
        bad = (x < lo) | (x > hi)
        while bad.any():
            x[bad] = g.standard_normal(int(bad.sum()), dtype=np.float32)
            bad = (x < lo) | (x > hi)
        return jnp.asarray(std * x, dtype)

    return init


def conv_fan_out_normal(groups: int = 1, gain: float = 2.0):
    """He normal on fan-out: N(0, sqrt(gain / fan_out)), fan_out = kh * kw * out / groups, the
    kernel HWIO ``[kh, kw, in/groups, out]``. timm's conv init in EfficientNet (``_init_weight_goog``,
    TF's), MobileNetV3, byobnet (RepVGG, MobileViT) and ``Conv2d`` here; the ``/ groups`` makes
    depthwise kernels much larger than Flax's fan-out variance scaling would."""

    def init(key, shape, dtype=jnp.float32):
        kh, kw, _, out = shape
        std = math.sqrt(gain / max(kh * kw * out // groups, 1))
        return normal(0.0, std)(key, shape, dtype)

    return init


def constant(value: float):
    def init(key, shape, dtype=jnp.float32):
        return jnp.full(shape, value, dtype)

    return init


def uniform(low: float, high: float):
    def init(key, shape, dtype=jnp.float32):
        g = numpy_generator(key)
        if g is None:
            return jax.random.uniform(key, shape, dtype, low, high)
        return jnp.asarray(g.uniform(low, high, shape).astype(np.float32), dtype)

    return init
