"""MobileViT v1 and v2 (timm ``mobilevit.py`` on top of ``byobnet.py``), NHWC, Flax NNX.

Papers: MobileViT (v1, arXiv 2110.02178) and Separable Self-attention for Mobile Vision
Transformers (v2, arXiv 2206.02680). timm builds both as a ``ByobNet``:

    stem (3x3 s2 conv-BN-SiLU)
    stages[0]: inverted residual(s)                       stride 1
    stages[1]: inverted residuals                         stride 2
    stages[2..4]: inverted residual (s2) + MobileViT block
    final_conv (v1 only: 1x1 conv-BN-SiLU to num_features) -> avg pool -> dropout -> head.fc

Attribute names are timm's module names (``stages[2][1].transformer[0].attn.qkv_proj``), so timm
checkpoints convert one to one.

The two MobileViT blocks differ more than their names suggest:

* **v1** (``MobileVitBlock``): conv3x3-BN-SiLU -> 1x1 conv -> unfold 2x2 patches -> standard
  pre-norm transformer (LayerNorm eps 1e-5, 4-head softmax attention, SiLU MLP) run on each of the
  P = 4 pixel positions as an independent sequence of N patches -> LayerNorm -> fold -> 1x1
  conv-BN-SiLU (``conv_proj``) -> concat with the block input -> 3x3 conv-BN-SiLU
  (``conv_fusion``). A map that is not a multiple of the patch size is resized (bilinear,
  ``align_corners=False``) *after* ``conv_1x1`` and resized back after the fold.
* **v2** (``MobileVitV2Block``): the map is first resized (bilinear, ``align_corners=True``) to a
  multiple of the patch size and **stays** at that size (224 px: stage 4 is 7x7 -> 8x8, and the
  head pools the 8x8 map). dw3x3-BN-SiLU -> 1x1 conv -> unfold -> pre-norm blocks of separable
  linear attention with ``GroupNorm(1)`` ("LayerNorm2d", normalises the whole [P, N, C] map) ->
  GroupNorm(1) -> fold -> 1x1 conv-BN (no activation). No skip and no concat with the block input.

The resizes are written by hand as interpolation matrices (:func:`bilinear_resize`) so that they
equal ``torch.nn.functional.interpolate(mode='bilinear')`` exactly; ``jax.image.resize`` uses
half-pixel centres with no corner alignment and differs by ~0.2 on this path.

Names: the variants are timm's. The study's names ``mobilevitv2_xxs`` / ``_xs`` / ``_s`` are
registered as aliases of ``mobilevitv2_050`` / ``075`` / ``100`` (width multipliers 0.5 / 0.75 /
1.0). Note: the study's own code actually trained MobileViT **v1** (``mobilevit_xxs`` / ``_xs`` /
``_s``) under those v2 names; the aliases follow the names, not what that code ran. Use the v1
names to reproduce the study's networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..layers import init as layer_init

from ..layers import (
    BatchNorm2d,
    ClassifierHead,
    Conv2d,
    DropPath,
    GroupNorm1,
    Identity,
    LayerNorm,
    Linear,
)
from ..layers.blocks import get_act, make_divisible
from ..registry import register_alias, register_variants
from .base import Classifier

__all__ = [
    "MobileViTConfig",
    "MobileViT",
    "ConvNormAct",
    "InvertedResidual",
    "MobileVitBlock",
    "MobileVitV2Block",
    "LinearSelfAttention",
    "LinearTransformerBlock",
    "TransformerBlock",
    "bilinear_resize",
    "interpolation_matrix",
    "build_mobilevit",
]


# --------------------------------------------------------------------------------------------
# Bilinear resize with torch semantics
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _interpolation_matrix_np(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
    src_idx = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = src_idx * scale
    else:
        # torch: half-pixel centres, negative source coordinates clamped to 0 (no antialias).
        src = np.maximum((src_idx + 0.5) * (in_size / out_size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    m = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), 1.0 - lam)
    np.add.at(m, (rows, i1), lam)
    return m.astype(np.float32)


def interpolation_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
    """``[out_size, in_size]`` weights of 1-D linear interpolation as torch computes them.

    ``align_corners=True``: source coordinate ``d * (in - 1) / (out - 1)``.
    ``align_corners=False``: ``max((d + 0.5) * in / out - 0.5, 0)``; torch's default without
    antialiasing, also when shrinking. Each row holds at most two non-zero weights summing to 1.
    """
    return _interpolation_matrix_np(int(in_size), int(out_size), bool(align_corners))


def bilinear_resize(x, size: tuple[int, int], align_corners: bool):
    """Resize NHWC ``x`` [B, H, W, C] to [B, size[0], size[1], C] like
    ``F.interpolate(x_nchw, size=size, mode='bilinear', align_corners=align_corners)``.

    Separable: one matrix product along H, one along W (the bilinear weights factorise), at full
    float32 precision so accelerators do not round the weights to TF32/bf16.
    """
    h, w = x.shape[1], x.shape[2]
    out_h, out_w = size
    dtype = x.dtype
    if (out_h, out_w) == (h, w):
        return x
    mh = jnp.asarray(interpolation_matrix(h, out_h, align_corners), dtype)
    mw = jnp.asarray(interpolation_matrix(w, out_w, align_corners), dtype)
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,bhwc->bowc", mh, x, precision=hp)
    return jnp.einsum("pw,bowc->bopc", mw, x, precision=hp)


# --------------------------------------------------------------------------------------------
# Patch unfold / fold
# --------------------------------------------------------------------------------------------


def unfold_patches(x, patch: int):
    """[B, H, W, C] -> [B, P, N, C] with P = patch*patch pixel positions (row-major inside the
    patch) and N = (H/patch)*(W/patch) patches (row-major): timm's ``[B, C, P, N]`` channels-last.
    """
    b, h, w, c = x.shape
    nh, nw = h // patch, w // patch
    x = x.reshape(b, nh, patch, nw, patch, c).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, patch * patch, nh * nw, c)


def fold_patches(x, patch: int, nh: int, nw: int):
    """Inverse of :func:`unfold_patches`: [B, P, N, C] -> [B, nh*patch, nw*patch, C]."""
    b, _, _, c = x.shape
    x = x.reshape(b, patch, patch, nh, nw, c).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(b, nh * patch, nw * patch, c)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def _linear_init():
    """timm byobnet init for every nn.Linear (transformer and classifier): N(0, 0.01)."""
    return layer_init.normal(0.0, 0.01)


def _conv(in_chs, out_chs, k=1, stride=1, groups=1, bias=False, *, dtype, rngs):
    return Conv2d(
        in_chs,
        out_chs,
        k,
        stride,
        groups=groups,
        bias=bias,
        dtype=dtype,
        rngs=rngs,
        kernel_init=layer_init.conv_fan_out_normal(groups),  # timm byobnet's conv init
    )


class ConvNormAct(nnx.Module):
    """timm ``ConvNormAct``: conv (no bias, symmetric padding) -> BatchNorm -> activation."""

    fuse_pairs = (("conv", "bn"),)

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "silu",
        bn_scale_init: float = 1.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.conv = _conv(in_chs, out_chs, kernel_size, stride, groups, dtype=dtype, rngs=rngs)
        self.bn = BatchNorm2d(out_chs, eps=1e-5, dtype=dtype, scale_init=bn_scale_init)
        self.act = act

    def __call__(self, x):
        return get_act(self.act)(self.bn(self.conv(x)))


class InvertedResidual(nnx.Module):
    """timm ``BottleneckBlock(bottle_in=True, linear_out=True)`` with a depthwise middle conv.

    1x1 conv-BN-SiLU (mid = make_divisible(in * ratio)) -> dw3x3 conv-BN-SiLU (stride) -> 1x1
    conv-BN. Identity residual only when stride 1 and in == out (timm's ``downsample=''`` gives
    no shortcut at all otherwise); no activation after the add.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int,
        bottle_ratio: float,
        drop_path_rate: float = 0.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        mid = make_divisible(in_chs * bottle_ratio)
        self.has_shortcut = stride == 1 and in_chs == out_chs
        self.conv1_1x1 = ConvNormAct(in_chs, mid, 1, dtype=dtype, rngs=rngs)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride, groups=mid, dtype=dtype, rngs=rngs)
        # timm zero-initialises the last BN scale of residual blocks (zero_init_last).
        self.conv3_1x1 = ConvNormAct(
            mid,
            out_chs,
            1,
            act=None,
            bn_scale_init=0.0 if self.has_shortcut else 1.0,
            dtype=dtype,
            rngs=rngs,
        )
        self.drop_path = DropPath(drop_path_rate, rngs=rngs) if drop_path_rate > 0 else Identity()

    def __call__(self, x):
        """[B, H, W, in] -> [B, H/stride, W/stride, out]."""
        shortcut = x
        x = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        # As in timm, drop path also applies to blocks without a shortcut (it then drops the
        # whole block output of a sample); kept for equivalence.
        x = self.drop_path(x)
        if self.has_shortcut:
            x = x + shortcut
        return x


# ---- v1: standard transformer ---------------------------------------------------------------


class Attention(nnx.Module):
    """timm ``Attention``: fused qkv Linear (bias), softmax(q k^T / sqrt(d)) v, proj Linear."""

    def __init__(self, dim: int, num_heads: int, *, dtype=None, rngs: nnx.Rngs):
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = Linear(
            dim, 3 * dim, bias=True, dtype=dtype, rngs=rngs, kernel_init=_linear_init()
        )
        self.proj = Linear(dim, dim, bias=True, dtype=dtype, rngs=rngs, kernel_init=_linear_init())

    def __call__(self, x):
        """[S, N, C] (S independent sequences of N tokens) -> [S, N, C]."""
        s, n, c = x.shape
        qkv = self.qkv(x).reshape(s, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [S, N, heads, hd]
        q = q * (self.head_dim**-0.5)
        logits = jnp.einsum("snhd,smhd->shnm", q, k)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x.dtype)
        out = jnp.einsum("shnm,smhd->snhd", attn, v).reshape(s, n, c)
        return self.proj(out)


class Mlp(nnx.Module):
    """timm ``Mlp``: fc1 -> act -> fc2 (Linears with bias)."""

    def __init__(self, dim: int, hidden: int, act: str, *, dtype=None, rngs: nnx.Rngs):
        self.fc1 = Linear(dim, hidden, dtype=dtype, rngs=rngs, kernel_init=_linear_init())
        self.fc2 = Linear(hidden, dim, dtype=dtype, rngs=rngs, kernel_init=_linear_init())
        self.act = act

    def __call__(self, x):
        return self.fc2(get_act(self.act)(self.fc1(x)))


class TransformerBlock(nnx.Module):
    """timm ``vision_transformer.Block`` as MobileViT v1 uses it: pre-norm LayerNorm (eps 1e-5),
    4-head attention with qkv bias, MLP ratio 2 with SiLU, no layer scale."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        act: str,
        drop_path_rate: float = 0.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.norm1 = LayerNorm(dim, eps=1e-5, dtype=dtype)
        self.attn = Attention(dim, num_heads, dtype=dtype, rngs=rngs)
        self.drop_path1 = DropPath(drop_path_rate, rngs=rngs) if drop_path_rate > 0 else Identity()
        self.norm2 = LayerNorm(dim, eps=1e-5, dtype=dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act, dtype=dtype, rngs=rngs)
        self.drop_path2 = DropPath(drop_path_rate, rngs=rngs) if drop_path_rate > 0 else Identity()

    def __call__(self, x):
        """[S, N, C] -> [S, N, C]."""
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class MobileVitBlock(nnx.Module):
    """MobileViT v1 block (see the module docstring). [B, H, W, C] -> [B, H, W, out]."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        transformer_dim: int,
        transformer_depth: int,
        patch_size: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.patch_size = patch_size
        # timm gives this block no group size: a full (not depthwise) 3x3 conv.
        self.conv_kxk = ConvNormAct(in_chs, in_chs, 3, dtype=dtype, rngs=rngs)
        self.conv_1x1 = _conv(in_chs, transformer_dim, 1, dtype=dtype, rngs=rngs)
        self.transformer = nnx.List(
            [
                TransformerBlock(
                    transformer_dim,
                    num_heads,
                    mlp_ratio,
                    "silu",
                    drop_path_rate,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(transformer_depth)
            ]
        )
        self.norm = LayerNorm(transformer_dim, eps=1e-5, dtype=dtype)
        self.conv_proj = ConvNormAct(transformer_dim, out_chs, 1, dtype=dtype, rngs=rngs)
        self.conv_fusion = ConvNormAct(in_chs + out_chs, out_chs, 3, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        shortcut = x
        x = self.conv_1x1(self.conv_kxk(x))
        b, h, w, c = x.shape
        p = self.patch_size
        nh, nw = -(-h // p), -(-w // p)
        resized = (nh * p, nw * p) != (h, w)
        if resized:
            x = bilinear_resize(x, (nh * p, nw * p), align_corners=False)
        # Each of the P pixel positions is its own sequence of N patches (timm's [B*P, N, C]),
        # which also makes drop path per (sample, position) as in timm.
        t = unfold_patches(x, p)
        t = t.reshape(b * p * p, nh * nw, c)
        for blk in self.transformer:
            t = blk(t)
        t = self.norm(t).reshape(b, p * p, nh * nw, c)
        x = fold_patches(t, p, nh, nw)
        if resized:
            x = bilinear_resize(x, (h, w), align_corners=False)
        x = self.conv_proj(x)
        return self.conv_fusion(jnp.concatenate([shortcut, x], axis=-1))


# ---- v2: separable linear attention ---------------------------------------------------------


class LinearSelfAttention(nnx.Module):
    """Separable self-attention of MobileViT v2 on [B, P, N, C].

    ``qkv_proj`` (1x1 conv, bias) gives 1 + 2C channels ordered [q | k | v]. The scalar query is
    softmaxed over the N patches separately for each pixel position P; the context vector is
    ``sum_N k * softmax(q)`` ([B, P, 1, C]); the output is ``relu(v) * context`` -> ``out_proj``.
    """

    def __init__(self, dim: int, *, dtype=None, rngs: nnx.Rngs):
        self.embed_dim = dim
        self.qkv_proj = _conv(dim, 1 + 2 * dim, 1, bias=True, dtype=dtype, rngs=rngs)
        self.out_proj = _conv(dim, dim, 1, bias=True, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        d = self.embed_dim
        qkv = self.qkv_proj(x)
        q, k, v = qkv[..., :1], qkv[..., 1 : 1 + d], qkv[..., 1 + d :]
        # softmax over N as the last axis (same values): LiteRT's converter writes one softmax
        # op, not max / sub / exp / sum / div over axis 2
        scores = jax.nn.softmax(q[..., 0].astype(jnp.float32), axis=-1).astype(x.dtype)
        context = jnp.sum(k * scores[..., None], axis=2, keepdims=True)  # [B, P, 1, C]
        return self.out_proj(jax.nn.relu(v) * context)


class ConvMlp(nnx.Module):
    """timm ``ConvMlp``: 1x1 conv fc1 (bias) -> act -> 1x1 conv fc2 (bias)."""

    def __init__(self, dim: int, hidden: int, act: str, *, dtype=None, rngs: nnx.Rngs):
        self.fc1 = _conv(dim, hidden, 1, bias=True, dtype=dtype, rngs=rngs)
        self.fc2 = _conv(hidden, dim, 1, bias=True, dtype=dtype, rngs=rngs)
        self.act = act

    def __call__(self, x):
        return self.fc2(get_act(self.act)(self.fc1(x)))


class LinearTransformerBlock(nnx.Module):
    """Pre-norm v2 transformer layer on [B, P, N, C]: GN1 -> linear attention, GN1 -> ConvMlp.

    ``GroupNorm1`` normalises each sample over P, N and C together (timm's "LayerNorm2d" here).
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float,
        act: str,
        drop_path_rate: float = 0.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.norm1 = GroupNorm1(dim, eps=1e-5, dtype=dtype)
        self.attn = LinearSelfAttention(dim, dtype=dtype, rngs=rngs)
        self.drop_path1 = DropPath(drop_path_rate, rngs=rngs) if drop_path_rate > 0 else Identity()
        self.norm2 = GroupNorm1(dim, eps=1e-5, dtype=dtype)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act, dtype=dtype, rngs=rngs)
        self.drop_path2 = DropPath(drop_path_rate, rngs=rngs) if drop_path_rate > 0 else Identity()

    def __call__(self, x):
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class MobileVitV2Block(nnx.Module):
    """MobileViT v2 block (see the module docstring).

    [B, H, W, C] -> [B, ceil(H/p)*p, ceil(W/p)*p, out]: a map that is not a multiple of the patch
    size is resized up (bilinear, align_corners=True) at the start and never resized back.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        transformer_dim: int,
        transformer_depth: int,
        patch_size: int = 2,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.patch_size = patch_size
        self.conv_kxk = ConvNormAct(in_chs, in_chs, 3, groups=in_chs, dtype=dtype, rngs=rngs)
        self.conv_1x1 = _conv(in_chs, transformer_dim, 1, dtype=dtype, rngs=rngs)
        self.transformer = nnx.List(
            [
                LinearTransformerBlock(
                    transformer_dim, mlp_ratio, "silu", drop_path_rate, dtype=dtype, rngs=rngs
                )
                for _ in range(transformer_depth)
            ]
        )
        self.norm = GroupNorm1(transformer_dim, eps=1e-5, dtype=dtype)
        self.conv_proj = ConvNormAct(transformer_dim, out_chs, 1, act=None, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        _, h, w, _ = x.shape
        p = self.patch_size
        nh, nw = -(-h // p), -(-w // p)
        if (nh * p, nw * p) != (h, w):
            x = bilinear_resize(x, (nh * p, nw * p), align_corners=True)
        x = self.conv_1x1(self.conv_kxk(x))
        t = unfold_patches(x, p)
        for blk in self.transformer:
            t = blk(t)
        x = fold_patches(self.norm(t), p, nh, nw)
        return self.conv_proj(x)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MobileViTConfig:
    """One MobileViT variant. Per-stage tuples have one entry for each of the 5 stages.

    version: 1 (MobileVitBlock) or 2 (MobileVitV2Block).
    stem_chs: width of the stride-2 stem conv.
    widths: output channels of each stage.
    ir_depths: inverted-residual blocks per stage (the first one carries the stage stride).
    strides: stage strides.
    ir_ratios: expansion of each stage's inverted residuals, relative to the block input.
    transformer_dims: width of the stage's MobileViT block, 0 = the stage has none.
    transformer_depths: transformer layers in that block.
    num_features: width of v1's final 1x1 conv (0 = no final conv, v2).
    """

    version: int
    stem_chs: int
    widths: tuple[int, ...]
    ir_depths: tuple[int, ...]
    strides: tuple[int, ...]
    ir_ratios: tuple[float, ...]
    transformer_dims: tuple[int, ...]
    transformer_depths: tuple[int, ...]
    num_features: int = 0
    patch_size: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0


class MobileViT(Classifier):
    """MobileViT v1/v2 classifier. NHWC float input [B, H, W, in_chans] (pixels in [0, 1]:
    mean 0 / std 1) -> logits [B, num_classes]. Any H, W >= 32 works: maps that are not a multiple
    of the patch size are resized as timm does."""

    timm_head = "head.fc"

    def __init__(
        self,
        cfg: MobileViTConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if cfg.version not in (1, 2):
            raise ValueError(f"MobileViTConfig.version must be 1 or 2, got {cfg.version}")
        self.cfg = cfg
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = ConvNormAct(in_chans, cfg.stem_chs, 3, 2, dtype=dtype, rngs=rngs)

        # timm: drop-path rates rise linearly over all blocks (IR and MobileViT blocks alike).
        n_blocks = [d + (1 if t else 0) for d, t in zip(cfg.ir_depths, cfg.transformer_dims)]
        rates = np.linspace(0.0, drop_path_rate, sum(n_blocks)).tolist()
        stages, prev, idx = [], cfg.stem_chs, 0
        for s, out in enumerate(cfg.widths):
            out = make_divisible(out)
            blocks = []
            for i in range(cfg.ir_depths[s]):
                blocks.append(
                    InvertedResidual(
                        prev,
                        out,
                        cfg.strides[s] if i == 0 else 1,
                        cfg.ir_ratios[s],
                        rates[idx],
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
                prev, idx = out, idx + 1
            if cfg.transformer_dims[s]:
                kw = dict(
                    patch_size=cfg.patch_size,
                    mlp_ratio=cfg.mlp_ratio,
                    drop_path_rate=rates[idx],
                    dtype=dtype,
                    rngs=rngs,
                )
                if cfg.version == 1:
                    blocks.append(
                        MobileVitBlock(
                            prev,
                            out,
                            cfg.transformer_dims[s],
                            cfg.transformer_depths[s],
                            num_heads=cfg.num_heads,
                            **kw,
                        )
                    )
                else:
                    blocks.append(
                        MobileVitV2Block(
                            prev, out, cfg.transformer_dims[s], cfg.transformer_depths[s], **kw
                        )
                    )
                prev, idx = out, idx + 1
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)

        if cfg.num_features:
            self.final_conv = ConvNormAct(prev, cfg.num_features, 1, dtype=dtype, rngs=rngs)
            self.num_features = cfg.num_features
        else:
            self.final_conv = None
            self.num_features = prev
        self.head = ClassifierHead(
            self.num_features,
            num_classes,
            drop_rate,
            kernel_init=_linear_init(),
            dtype=dtype,
            rngs=rngs,
        )

    def forward_features(self, x):
        """[B, H, W, in_chans] -> [B, ~H/32, ~W/32, num_features] (v2 rounds up to even sizes
        inside its blocks, so 224 px gives 8x8)."""
        x = self.stem(x)
        for stage in self.stages:
            for blk in stage:
                x = blk(x)
        if self.final_conv is not None:
            x = self.final_conv(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        """[B, h, w, num_features] -> logits [B, num_classes] (pooled features when
        ``pre_logits`` or num_classes == 0)."""
        return self.head(x, pre_logits=pre_logits)


def build_mobilevit(
    cfg: MobileViTConfig,
    *,
    num_classes: int = 1000,
    rngs: nnx.Rngs,
    dtype=None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    in_chans: int = 3,
) -> MobileViT:
    """Registry builder: a :class:`MobileViT` from its config."""
    return MobileViT(
        cfg,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        dtype=dtype,
        rngs=rngs,
    )


# --------------------------------------------------------------------------------------------
# Variants (timm's model_cfgs as data)
# --------------------------------------------------------------------------------------------


def _v2_config(multiplier: float) -> MobileViTConfig:
    chs = (64, 128, 256, 384, 512)
    if multiplier != 1.0:
        chs = tuple(int(c * multiplier) for c in chs)
    return MobileViTConfig(
        version=2,
        stem_chs=int(32 * multiplier),
        widths=chs,
        ir_depths=(1, 2, 1, 1, 1),
        strides=(1, 2, 2, 2, 2),
        ir_ratios=(2.0,) * 5,
        transformer_dims=(0, 0) + tuple(make_divisible(0.5 * c) for c in chs[2:]),
        transformer_depths=(0, 0, 2, 4, 3),
    )


def _v1_config(widths, dims, num_features, ratio) -> MobileViTConfig:
    return MobileViTConfig(
        version=1,
        stem_chs=16,
        widths=widths,
        ir_depths=(1, 3, 1, 1, 1),
        strides=(1, 2, 2, 2, 2),
        ir_ratios=(ratio,) * 5,
        transformer_dims=(0, 0) + dims,
        transformer_depths=(0, 0, 2, 4, 3),
        num_features=num_features,
    )


# name: (config, info): what differs from _DEFAULT_INFO (timm 1.0.31's default pretrained cfg);
# top1: ImageNet top-1 of those weights from porting-spec section 4 (None where it gives none).
_DEFAULT_INFO = dict(
    input_size=(3, 256, 256),
    test_input_size=(3, 256, 256),
    crop_pct=0.888,
    interpolation="bicubic",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    hf_tag="cvnets_in1k",
)
_V1 = dict(crop_pct=0.9)

VARIANTS: dict[str, tuple[MobileViTConfig, dict]] = {
    "mobilevit_xxs": (_v1_config((16, 24, 48, 64, 80), (64, 80, 96), 320, 2.0), _V1),
    "mobilevit_xs": (_v1_config((32, 48, 64, 80, 96), (96, 120, 144), 384, 4.0), _V1),
    "mobilevit_s": (_v1_config((32, 64, 96, 128, 160), (144, 192, 240), 640, 4.0), _V1),
    "mobilevitv2_050": (_v2_config(0.50), dict(top1=70.156)),
    "mobilevitv2_075": (_v2_config(0.75), dict(top1=75.612)),
    "mobilevitv2_100": (_v2_config(1.00), dict(top1=78.088)),
    "mobilevitv2_125": (_v2_config(1.25), dict(top1=79.682)),
    "mobilevitv2_150": (_v2_config(1.50), dict(top1=80.380)),
    "mobilevitv2_175": (_v2_config(1.75), dict(top1=80.870)),
    "mobilevitv2_200": (_v2_config(2.00), dict(top1=81.148)),
}

register_variants("mobilevit", VARIANTS, build_mobilevit, defaults=_DEFAULT_INFO)

# The study's names (see the module docstring: its code trained v1 under these names).
register_alias("mobilevitv2_xxs", "mobilevitv2_050")
register_alias("mobilevitv2_xs", "mobilevitv2_075")
register_alias("mobilevitv2_s", "mobilevitv2_100")
