"""Blocks and helpers shared by several families."""

from __future__ import annotations

import contextlib
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from .core import Conv2d

__all__ = [
    "make_divisible",
    "get_act",
    "litert_activations",
    "SqueezeExcite",
    "global_avg_pool",
]


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


def _gelu_exact_composite(x):
    # one `stablehlo.composite "tfl.gelu"` op: LiteRT's converter lowers it to its builtin GELU
    # (one int8-capable kernel); other consumers run the exact decomposition
    return jax.lax.composite(_gelu_decomposition, name="tfl.gelu")(x, approximate=False)


def _gelu_decomposition(x, approximate):
    return jax.nn.gelu(x, approximate=approximate)


def _hard_sigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def _hard_swish(x):
    return x * jax.nn.relu6(x + 3.0) / 6.0


def _hard_swish_unfused(x):
    # the same function written so that LiteRT's converter writes ADD (with a fused RELU6) and two
    # MULs instead of one HARD_SWISH: the int8 HARD_SWISH kernel refuses an input range over 128x
    # its output range (a check that aborts the runtime) and XNNPACK does not take it, nor the
    # RELU_0_TO_1 of x * clip(x / 6 + 1/2, 0, 1); it takes these three
    return (jax.nn.relu6(x + 3.0) * x) * (1.0 / 6.0)


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


# the activations models trace inside ``litert_activations()``
_LITERT_ACTS: dict[str, Callable] = {"gelu": _gelu_exact_composite}
_LITERT_INT8_ACTS: dict[str, Callable] = {**_LITERT_ACTS, "hard_swish": _hard_swish_unfused}
_override: dict[str, Callable] = {}


@contextlib.contextmanager
def litert_activations(int8: bool = False):
    """Within the block, models trace their activations in the form LiteRT's converter and
    runtime want, with the same values: exact GELU as a ``stablehlo.composite "tfl.gelu"`` (one
    builtin GELU instead of the ~30 elementwise ops of erf's polynomial, whose int8 form the
    runtime cannot allocate) and, for ``int8``, hard-swish in a form the converter does not fuse
    into its int8 HARD_SWISH kernel (which refuses wide input ranges)."""
    global _override
    old, _override = _override, (_LITERT_INT8_ACTS if int8 else _LITERT_ACTS)
    try:
        yield
    finally:
        _override = old


def get_act(name: str | None) -> Callable:
    """Activation by timm's name; GELU is the exact (erf) form, as in PyTorch."""
    if name in _override:
        return _override[name]
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
