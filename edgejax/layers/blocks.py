"""Blocks and helpers shared by several families."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from .core import Conv2d

__all__ = ["make_divisible", "get_act", "SqueezeExcite", "global_avg_pool"]


def make_divisible(
    v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """timm's make_divisible: round to a multiple of ``divisor`` without going below 90%."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def _gelu_exact(x):
    return jax.nn.gelu(x, approximate=False)


def _hard_sigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def _hard_swish(x):
    return x * jax.nn.relu6(x + 3.0) / 6.0


_ACTS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "gelu": _gelu_exact,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "hard_swish": _hard_swish,
    "hard_sigmoid": _hard_sigmoid,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
    None: lambda x: x,
}


def get_act(name: str | None) -> Callable:
    """Activation by timm's name; GELU is the exact (erf) form, as in PyTorch."""
    try:
        return _ACTS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known: {sorted(k for k in _ACTS if k)}"
        ) from None


def global_avg_pool(x, keepdims: bool = False):
    """Mean over H, W of an NHWC tensor, accumulated in float32."""
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=keepdims).astype(x.dtype)


class SqueezeExcite(nnx.Module):
    """timm's efficientnet SqueezeExcite: pool -> conv_reduce (bias) -> act -> conv_expand (bias)
    -> gate -> scale the input."""

    def __init__(
        self,
        in_chs: int,
        rd_chs: int,
        act: str = "relu",
        gate: str = "sigmoid",
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.conv_reduce = Conv2d(in_chs, rd_chs, 1, bias=True, dtype=dtype, rngs=rngs)
        self.conv_expand = Conv2d(rd_chs, in_chs, 1, bias=True, dtype=dtype, rngs=rngs)
        self.act, self.gate = act, gate

    def __call__(self, x):
        s = global_avg_pool(x, keepdims=True)
        s = get_act(self.act)(self.conv_reduce(s))
        s = get_act(self.gate)(self.conv_expand(s))
        return x * s
