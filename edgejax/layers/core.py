"""Leaf layers with timm/PyTorch semantics, NHWC.

Every leaf keeps PyTorch's numerics where they differ from Flax defaults: BatchNorm momentum 0.1
(Flax 0.9) with the running variance updated unbiased, LayerNorm/GroupNorm with explicit eps and
two-pass variance, explicit symmetric conv padding (not 'SAME') unless the variant is a `tf_` one.
Parameters are created in float32 (``param_dtype``); ``dtype`` is the compute dtype.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from . import init as _init

__all__ = [
    "get_padding",
    "Conv2d",
    "DEPTHWISE_CHOICES",
    "depthwise_impl",
    "set_depthwise_impl",
    "restore_depthwise_impl",
    "Linear",
    "BatchNorm2d",
    "LayerNorm",
    "GroupNorm1",
    "DropPath",
    "Dropout",
    "train_rates",
    "Identity",
    "cast",
]


def cast(x, dtype):
    return x if dtype is None else x.astype(dtype)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def get_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """timm's symmetric padding: ((s - 1) + d (k - 1)) // 2."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


# How a depthwise convolution (groups == in == out channels) is computed. XLA:CPU lowers a grouped
# convolution to a slow generic loop (a 3x3 depthwise conv on a 128x16x16x64 batch: ~80 ms forward,
# ~300 ms with its gradient on two cores); the same sum written as k*k shifted multiply-adds runs
# 5-30x faster there and is identical up to float summation order. GPUs and TPUs have fast grouped
# convolutions, and exported graphs (ONNX, StableHLO, LiteRT) should carry one Conv op, so a
# ``Conv2d``'s ``depthwise`` is "auto" (the shifted form when traced for the CPU backend), "conv"
# or "shift"; exporters set "conv" on the model they trace (``depthwise_impl(model, "conv")``).
# "bands": a kernel of more than 25 taps as a sum of depthwise convs over bands of rows of at most
# 25 taps each, for LiteRT: XNNPACK's depthwise kernels take up to 25 taps, and a 7x7 one (49
# taps, ConvNeXt) ran 15x slower per multiply-add there than a 5x5 or three 3x7 bands.
DEPTHWISE_CHOICES = ("auto", "conv", "shift", "bands")
BAND_TAPS = 25


def _check_depthwise(impl: str) -> str:
    if impl not in DEPTHWISE_CHOICES:
        raise ValueError(f"depthwise impl must be one of {DEPTHWISE_CHOICES}, got {impl!r}")
    return impl


def set_depthwise_impl(model, impl: str) -> dict:
    """Set how every ``Conv2d`` of ``model`` computes a depthwise convolution: "auto" (shifted
    multiply-adds when traced for the CPU backend, a grouped convolution elsewhere), "conv",
    "shift" or "bands" (grouped convolutions of at most 25 taps each, for LiteRT). In place; returns the previous settings (for ``restore_depthwise_impl``). Takes
    effect for functions traced afterwards (a ``jit`` keeps what it traced)."""
    _check_depthwise(impl)
    old = {}
    for _, m in nnx.iter_graph(model):
        if isinstance(m, Conv2d):
            old[id(m)] = (m, m.depthwise)
            m.depthwise = impl
    return old


def restore_depthwise_impl(old: dict) -> None:
    """Undo ``set_depthwise_impl`` (give it what that returned)."""
    for m, impl in old.values():
        m.depthwise = impl


@contextlib.contextmanager
def depthwise_impl(model, impl: str):
    """``set_depthwise_impl`` for the duration of a ``with`` block (the exporters use
    ``depthwise_impl(model, "conv")``)."""
    old = set_depthwise_impl(model, impl)
    try:
        yield model
    finally:
        restore_depthwise_impl(old)


def _depthwise_shift(x, kernel, stride, padding, dilation):
    """Depthwise conv (kernel [kh, kw, 1, C]) as a sum of kh*kw strided slices times per-channel
    weights; the same result as ``conv_general_dilated(..., feature_group_count=C)``."""
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = stride, dilation
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(
            x.shape[1:3], ((kh - 1) * dh + 1, (kw - 1) * dw + 1), stride, padding
        )
    (pt, pb), (pl, pr) = padding
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    n, hp, wp, c = xp.shape
    ho = (hp - (kh - 1) * dh - 1) // sh + 1
    wo = (wp - (kw - 1) * dw - 1) // sw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            tap = (
                jax.lax.slice(
                    xp,
                    (0, y0, x0, 0),
                    (n, y0 + (ho - 1) * sh + 1, x0 + (wo - 1) * sw + 1, c),
                    (1, sh, sw, 1),
                )
                * kernel[i, j, 0]
            )
            out = tap if out is None else out + tap
    return out


def _depthwise_bands(x, kernel, stride, padding, dilation, feature_group_count):
    """Depthwise conv as a sum of depthwise convs over bands of kernel rows, each of at most
    ``BAND_TAPS`` taps, on the once-padded input; one conv when the kernel is that small."""
    kh, kw = kernel.shape[:2]
    rows = BAND_TAPS // kw
    conv = functools.partial(
        jax.lax.conv_general_dilated,
        window_strides=stride,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=feature_group_count,
    )
    if kh * kw <= BAND_TAPS or rows == 0:
        return conv(x, kernel, padding=padding)
    (sh, _), (dh, dw) = stride, dilation
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(
            x.shape[1:3], ((kh - 1) * dh + 1, (kw - 1) * dw + 1), stride, padding
        )
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    ho = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    pt, h = padding[0][0], x.shape[1]
    out = None
    for r0 in range(0, kh, rows):
        band = kernel[r0 : r0 + rows]
        top = r0 * dh
        read = {o * sh + top + r * dh for o in range(ho) for r in range(band.shape[0])}
        if all(i < pt or i >= pt + h for i in read):
            continue  # a band that reads only padding adds zeros (small maps, e.g. 1x1)
        rows_in = (ho - 1) * sh + (band.shape[0] - 1) * dh + 1
        y = conv(xp[:, top : top + rows_in], band, padding="VALID")
        out = y if out is None else out + y
    return out


class Identity(nnx.Module):
    def __call__(self, x):
        return x


class Conv2d(nnx.Module):
    """2-D convolution, NHWC input, HWIO kernel (timm OIHW transposed (2, 3, 1, 0)).

    ``padding``: None for timm's symmetric default, an int, or ``'same'`` for TF 'SAME' padding
    (what timm's ``Conv2dSame`` / ``tf_`` variants compute). ``depthwise``: how a depthwise conv
    is computed, "auto", "conv", "shift" or "bands" (see ``set_depthwise_impl``).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int | Sequence[int] = 1,
        stride: int = 1,
        padding: int | str | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        *,
        dtype=None,
        rngs: nnx.Rngs,
        kernel_init=None,
        depthwise: str = "auto",
    ):
        kh, kw = _pair(kernel_size)
        self.depthwise = _check_depthwise(depthwise)
        if in_chs % groups or out_chs % groups:
            raise ValueError(
                f"Conv2d: channels {in_chs}->{out_chs} not divisible by groups={groups}"
            )
        self.in_chs, self.out_chs, self.groups = in_chs, out_chs, groups
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        if isinstance(padding, str):
            if padding.lower() != "same":
                raise ValueError(f"Conv2d: padding must be None, an int or 'same', got {padding!r}")
            self.padding = "SAME"
        else:
            if padding is None:
                padding = (
                    get_padding(kh, self.stride[0], self.dilation[0]),
                    get_padding(kw, self.stride[1], self.dilation[1]),
                )
            ph, pw = _pair(padding)
            self.padding = ((ph, ph), (pw, pw))
        self.dtype = dtype
        shape = (kh, kw, in_chs // groups, out_chs)
        if kernel_init is None:
            kernel = _init.conv_fan_out_normal(groups)(rngs.params(), shape, jnp.float32)
        else:
            kernel = kernel_init(rngs.params(), shape, jnp.float32)
        self.kernel = nnx.Param(kernel)
        self.bias = nnx.Param(jnp.zeros((out_chs,), jnp.float32)) if bias else None

    def _shift(self) -> bool:
        impl = self.depthwise
        return impl == "shift" or (impl == "auto" and jax.default_backend() == "cpu")

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        depthwise = self.groups > 1 and self.groups == self.in_chs == self.out_chs
        if depthwise and self._shift():
            y = _depthwise_shift(
                cast(x, dtype),
                cast(self.kernel[...], dtype),
                self.stride,
                self.padding,
                self.dilation,
            )
        elif depthwise and self.depthwise == "bands":
            y = _depthwise_bands(
                cast(x, dtype),
                cast(self.kernel[...], dtype),
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
        else:
            y = jax.lax.conv_general_dilated(
                cast(x, dtype),
                cast(self.kernel[...], dtype),
                window_strides=self.stride,
                padding=self.padding,
                rhs_dilation=self.dilation,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=self.groups,
            )
        if self.bias is not None:
            y = y + cast(self.bias[...], dtype)
        return y


class Linear(nnx.Module):
    """Dense layer on the last axis; kernel is [in, out] (timm's [out, in] transposed)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype=None,
        rngs: nnx.Rngs,
        kernel_init=None,
    ):
        self.in_features, self.out_features = in_features, out_features
        self.dtype = dtype
        init = kernel_init or _init.truncated_normal(0.02)
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if bias else None

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        y = jnp.matmul(cast(x, dtype), cast(self.kernel[...], dtype))
        if self.bias is not None:
            y = y + cast(self.bias[...], dtype)
        return y


class BatchNorm2d(nnx.Module):
    """BatchNorm over all axes but the last, with PyTorch semantics.

    Train mode normalises with the biased batch variance and updates the running variance with the
    unbiased one, momentum 0.1 (``new = (1 - m) * old + m * batch``), as ``torch.nn.BatchNorm2d``.
    Statistics are computed in float32 whatever the compute dtype. Under a sharded ``jit`` the
    batch reductions are global: the compiler synchronises them across devices.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        dtype=None,
        use_running_average: bool = False,
        rngs: nnx.Rngs | None = None,
        scale_init=1.0,
        bias_init=0.0,
    ):
        """``scale_init`` / ``bias_init``: a constant, or an initializer ``f(key, shape, dtype)``
        drawn from ``rngs.params`` (e.g. RepVGG's N(0.1, 0.1) scales)."""
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.dtype = dtype
        self.use_running_average = use_running_average

        def init(v):
            if callable(v):
                return v(rngs.params(), (num_features,), jnp.float32)
            return jnp.full((num_features,), v, jnp.float32)

        self.scale = nnx.Param(init(scale_init))
        self.bias = nnx.Param(init(bias_init))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(jnp.float32)
            mean = jnp.mean(xf, axes)
            var = jnp.mean(jnp.square(xf - mean), axes)
            n = math.prod(x.shape[a] for a in axes)
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
            self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)
        inv = jax.lax.rsqrt(var + self.eps) * self.scale[...]
        shift = self.bias[...] - mean * inv
        return cast(x, dtype) * cast(inv, dtype) + cast(shift, dtype)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis (also timm's ``LayerNorm2d`` in NHWC), two-pass variance."""

    def __init__(
        self, num_features: int, eps: float = 1e-5, *, dtype=None, rngs: nnx.Rngs | None = None
    ):
        self.num_features, self.eps, self.dtype = num_features, eps, dtype
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, -1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), -1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return y.astype(dtype)


class GroupNorm1(nnx.Module):
    """GroupNorm with one group: normalise each sample over all non-batch axes, affine per channel
    (the last axis). timm's MobileViT v2 "LayerNorm2d" is ``GroupNorm(1, C)``."""

    def __init__(
        self, num_features: int, eps: float = 1e-5, *, dtype=None, rngs: nnx.Rngs | None = None
    ):
        self.num_features, self.eps, self.dtype = num_features, eps, dtype
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        axes = tuple(range(1, x.ndim))
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axes, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axes, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return y.astype(dtype)


class DropPath(nnx.Module):
    """Stochastic depth: drop whole samples of a residual branch, scale survivors by 1/keep.

    Each instance draws from its own forked key stream, so blocks decide independently.
    """

    def __init__(
        self, rate: float = 0.0, *, rngs: nnx.Rngs | None = None, deterministic: bool = False
    ):
        self.rate = float(rate)
        self.deterministic = deterministic
        self.rngs = rngs.fork() if (rngs is not None and self.rate > 0) else None

    def __call__(self, x):
        # ``rate`` is a Python float, or a traced array while :func:`train_rates` is active.
        if self.deterministic or (isinstance(self.rate, float) and self.rate == 0.0):
            return x
        if self.rngs is None:
            raise ValueError("DropPath with rate > 0 needs rngs at construction")
        keep = 1.0 - self.rate
        key = self.rngs.dropout()
        mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return x * mask.astype(x.dtype) / keep


class Dropout(nnx.Dropout):
    """``nnx.Dropout`` whose rate may also be a traced array (see :func:`train_rates`); the same
    state as ``nnx.Dropout``."""

    def __call__(self, inputs, *, deterministic: bool | None = None, rngs=None):
        if isinstance(self.rate, (int, float)):
            return super().__call__(inputs, deterministic=deterministic, rngs=rngs)
        det = self.deterministic if deterministic is None else deterministic
        if det:
            return inputs
        stream = rngs if rngs is not None else self.rngs
        key = stream[self.rng_collection]() if isinstance(stream, nnx.Rngs) else stream()
        keep = 1.0 - self.rate
        shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            shape[dim] = 1
        mask = jnp.broadcast_to(jax.random.bernoulli(key, keep, shape), inputs.shape)
        return jax.lax.select(mask, inputs / keep.astype(inputs.dtype), jnp.zeros_like(inputs))


@contextlib.contextmanager
def train_rates(
    model: nnx.Module, *, drop_path, dropout, built_drop_path: float, built_dropout: float
):
    """Run ``model`` (merged inside a traced step) at drop path / dropout rates given as arrays.

    Every ``DropPath`` / ``Dropout`` built with a rate r > 0 runs at ``(r / built) * new`` while
    the context is active (``built``: the model's ``drop_path_rate`` / ``drop_rate`` at
    construction), so the per-block stochastic-depth ramp keeps its shape and one compiled step
    serves any rate. The Python rates are restored on exit (the graph definition stays static).
    """
    saved = []
    for _, m in nnx.iter_graph(model):
        if isinstance(m, DropPath) and isinstance(m.rate, float) and m.rate > 0 and built_drop_path:
            saved.append((m, m.rate))
            m.rate = jnp.float32(m.rate / built_drop_path) * drop_path
        elif (
            isinstance(m, nnx.Dropout)
            and isinstance(m.rate, (int, float))
            and m.rate > 0
            and built_dropout
        ):
            if not isinstance(m, Dropout):
                raise TypeError(
                    f"{type(m).__name__}: use edgejax.layers.Dropout for a rate that "
                    "varies per trial"
                )
            saved.append((m, m.rate))
            m.rate = jnp.float32(m.rate / built_dropout) * dropout
    try:
        yield model
    finally:
        for m, rate in saved:
            m.rate = rate
