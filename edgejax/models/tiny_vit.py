"""TinyViT (Wu et al., "TinyViT: Fast Pretraining Distillation for Small Vision Transformers",
ECCV 2022): a Flax NNX port of timm's ``tiny_vit.py``, numerically identical to it, NHWC.

Layout (timm module names, which are also the attribute names here)::

    patch_embed   ConvNorm 3x3 s2 (-> dim/2) -> GELU -> ConvNorm 3x3 s2           [B, H/4, W/4, d0]
    stages[0]     blocks: MBConv x depth[0]                                         [B, H/4, W/4, d0]
    stages[1..3]  downsample: PatchMerging (1x1 -> GELU -> dw3x3 s2 -> GELU -> 1x1),
                  blocks: TinyVitBlock x depth[i] (window attention, local dw conv, MLP)
    head          global average pool -> LayerNorm -> dropout -> fc                 [B, classes]

Every ConvNorm is conv (no bias) + BatchNorm (eps 1e-5); LayerNorms use eps 1e-5 (the head's
too); GELU is the exact erf form. The original Microsoft (Cream/TinyViT) checkpoints load through
``TinyVit.timm_remap`` (see there).

timm's default pretrained tag for the 224 px models is ``dist_in22k`` with a 21,841-class head;
``edgejax.convert.from_timm`` infers the head width from the state dict, so such checkpoints load
as 21,841-class models while ``create_model`` defaults to 1,000 classes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..layers import init as _init
from ..layers import (
    ClassifierHead,
    BatchNorm2d,
    Conv2d,
    DropPath,
    Dropout,
    LayerNorm,
    Linear,
    cast,
    get_act,
)
from ..registry import register_variants
from .base import Classifier

__all__ = [
    "TinyVitConfig",
    "TinyVit",
    "TinyVitBlock",
    "MBConv",
    "PatchMerging",
    "PatchEmbed",
    "ConvNorm",
    "Attention",
    "NormMlp",
    "relative_bias_index",
    "build_tiny_vit",
]

_BN_EPS = 1e-5
_LN_EPS = 1e-5
_ACT = "gelu"  # exact erf GELU, as torch.nn.GELU()


def _conv_init():
    """torch.nn.Conv2d's default init (kaiming_uniform, a=sqrt(5)): U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) with fan_in = kh * kw * in/groups, which timm keeps for TinyViT's convs (its
    _init_weights only touches nn.Linear). HWIO kernel. Drawn with numpy when the key is concrete
    (no XLA compile per layer shape, see edgejax.layers.init)."""

    def init(key, shape, dtype=jnp.float32):
        kh, kw, cin, _ = shape
        bound = 1.0 / np.sqrt(max(kh * kw * cin, 1))
        g = _init.numpy_generator(key)
        if g is None:
            return jax.random.uniform(key, shape, dtype, -bound, bound)
        return jnp.asarray(g.uniform(-bound, bound, shape), dtype)

    return init


@functools.lru_cache(maxsize=None)
def relative_bias_index(window_size: int) -> np.ndarray:
    """``[ws^2, ws^2]`` int32 table: entry (i, j) indexes the bias of the offset between window
    tokens i and j (row-major) in the ``[heads, ws^2]`` bias table: ``|dy| * ws + |dx|``.

    timm numbers the distinct offsets in first-seen order over (token i, token j); token 0 sees
    every (|dy|, |dx|) first in row-major order, so that order is exactly ``|dy| * ws + |dx|``.
    timm keeps the table as the non-persistent buffer ``attention_bias_idxs``; here it is a
    constant (cached per window size) so it never enters the model state.
    """
    ys, xs = np.divmod(np.arange(window_size * window_size), window_size)
    dy = np.abs(ys[:, None] - ys[None, :])
    dx = np.abs(xs[:, None] - xs[None, :])
    idx = (dy * window_size + dx).astype(np.int32)
    idx.setflags(write=False)
    return idx


class ConvNorm(nnx.Module):
    """Conv2d (no bias) -> BatchNorm2d, timm's ``ConvNorm`` (an nn.Sequential of conv, bn)."""

    fuse_pairs = (("conv", "bn"),)

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.conv = Conv2d(
            in_chs,
            out_chs,
            kernel_size,
            stride,
            padding=padding,
            groups=groups,
            bias=False,
            dtype=dtype,
            rngs=rngs,
            kernel_init=_conv_init(),
        )
        self.bn = BatchNorm2d(out_chs, eps=_BN_EPS, dtype=dtype, scale_init=bn_weight_init)

    def __call__(self, x):
        return self.bn(self.conv(x))


class PatchEmbed(nnx.Module):
    """Stem: ConvNorm 3x3 s2 (-> out/2) -> GELU -> ConvNorm 3x3 s2. [B,H,W,in] -> [B,H/4,W/4,out]
    (sizes rounded up: each conv pads 1)."""

    def __init__(self, in_chs: int, out_chs: int, *, dtype=None, rngs: nnx.Rngs):
        self.conv1 = ConvNorm(in_chs, out_chs // 2, 3, 2, 1, dtype=dtype, rngs=rngs)
        self.conv2 = ConvNorm(out_chs // 2, out_chs, 3, 2, 1, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.conv2(get_act(_ACT)(self.conv1(x)))


class MBConv(nnx.Module):
    """Stage-0 inverted residual: 1x1 -> GELU -> dw3x3 -> GELU -> 1x1 (BN gamma init 0) ->
    drop path -> add the input -> GELU (the activation comes after the add). Shape preserving."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        expand_ratio: float,
        drop_path: float,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        mid = int(in_chs * expand_ratio)
        self.conv1 = ConvNorm(in_chs, mid, 1, dtype=dtype, rngs=rngs)
        self.conv2 = ConvNorm(mid, mid, 3, 1, 1, groups=mid, dtype=dtype, rngs=rngs)
        # Zero-initialised last BN: each block starts as (GELU of) the identity.
        self.conv3 = ConvNorm(mid, out_chs, 1, bn_weight_init=0.0, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x):
        act = get_act(_ACT)
        y = act(self.conv1(x))
        y = act(self.conv2(y))
        y = self.conv3(y)
        return act(x + self.drop_path(y))


class PatchMerging(nnx.Module):
    """Downsample at the start of stages 1-3: 1x1 -> GELU -> dw3x3 s2 -> GELU -> 1x1.
    [B, H, W, dim] -> [B, ceil(H/2), ceil(W/2), out_dim]."""

    def __init__(self, dim: int, out_dim: int, *, dtype=None, rngs: nnx.Rngs):
        self.conv1 = ConvNorm(dim, out_dim, 1, 1, 0, dtype=dtype, rngs=rngs)
        self.conv2 = ConvNorm(out_dim, out_dim, 3, 2, 1, groups=out_dim, dtype=dtype, rngs=rngs)
        self.conv3 = ConvNorm(out_dim, out_dim, 1, 1, 0, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        act = get_act(_ACT)
        return self.conv3(act(self.conv2(act(self.conv1(x)))))


class Attention(nnx.Module):
    """Multi-head self-attention over the tokens of one window, with its pre-LayerNorm and a
    learned bias per head and per relative offset (|dy|, |dx|) (LeViT style).

    ``qkv`` is laid out per head: its output reshaped to [..., heads, 2*key_dim + val_dim] splits
    into q, k, v (timm's ``view(B, N, h, -1).split([kd, kd, vd])``), not into three
    [heads*kd] blocks. Scale is key_dim^-0.5. Windows as tokens [B', ws*ws, dim] or as maps
    [B', ws, ws, dim], returned in the same form.

    ``heads_along_channels``: how the heads are laid out between qkv and proj for a window given
    as a map, the same values either way. False (the default): tokens first, ``[b, h, n, d]``,
    what XLA runs fastest (on the CPU the other form is ~5x slower). True: channels first,
    ``[b, h, d, n]``; the products then only swap their operands' last two axes, which ONNX
    runtimes fold into MatMul, and the layout pass keeps qkv and proj NCHW convs with no
    transpose between them and the heads (``edgejax.export.layout``). ONNX export sets it on
    the model it traces. Windows given as tokens are always attended tokens first: there qkv
    and proj are MatMuls on tokens, and the channels-first form would only add a transpose of
    qkv's output and make proj read its input transposed.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int,
        window_size: int,
        attn_ratio: float = 1.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.num_heads, self.key_dim = num_heads, key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.window_size = window_size
        self.dtype = dtype
        self.heads_along_channels = False
        self.norm = LayerNorm(dim, eps=_LN_EPS, dtype=dtype)
        self.qkv = Linear(dim, num_heads * (2 * key_dim + self.val_dim), dtype=dtype, rngs=rngs)
        self.proj = Linear(num_heads * self.val_dim, dim, dtype=dtype, rngs=rngs)
        # timm initialises the table to zeros. Shape [heads, ws^2], as timm's state dict.
        self.attention_biases = nnx.Param(
            jnp.zeros((num_heads, window_size * window_size), jnp.float32)
        )
        relative_bias_index(window_size)  # build (and cache) the index table now

    def __call__(self, x, normed: bool = False):
        """``normed``: ``x`` has been through ``self.norm`` already (a token-wise op, so callers
        may apply it before partitioning a map into windows)."""
        lead = x.shape[:-1]
        n = math.prod(lead[1:])
        if n != self.window_size**2:
            raise ValueError(
                f"Attention: expected {self.window_size**2} tokens per window, got {n}"
            )
        dtype = self.dtype or x.dtype
        h, kd, vd = self.num_heads, self.key_dim, self.val_dim
        x = self.qkv(x if normed else self.norm(x))  # on a map: a 1x1 conv in ONNX graphs
        # Batched matmuls, not einsums: the same XLA program, but MatMul ops in ONNX (much
        # faster there than Einsum). -1 for the batch: exported graphs get constant shapes.
        if self.heads_along_channels and len(lead) == 3:  # a map; timm's view(B, N, h, -1),
            # transposed: [b, h, d, n]
            x = x.reshape(-1, n, x.shape[-1]).transpose(0, 2, 1).reshape(-1, h, 2 * kd + vd, n)
            q, k, v = jnp.split(x, [kd, 2 * kd], axis=2)
            attn = self._weights(q.transpose(0, 1, 3, 2), k, dtype)  # [b, h, n, n]
            out = jnp.matmul(v.astype(dtype), attn.transpose(0, 1, 3, 2))  # [b, h, dv, n]
            out = out.reshape(-1, h * vd, n).transpose(0, 2, 1)
        else:  # timm's view(B, N, h, -1): [b, n, h, d]
            x = x.reshape(-1, n, h, 2 * kd + vd)
            q, k, v = jnp.split(x, [kd, 2 * kd], axis=-1)
            attn = self._weights(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 3, 1), dtype)
            out = jnp.matmul(attn, v.astype(dtype).transpose(0, 2, 1, 3))  # [b, h, n, dv]
            out = out.transpose(0, 2, 1, 3)
        return self.proj(out.reshape(-1, *lead[1:], h * vd))

    def _weights(self, q, k_t, dtype):
        """Attention weights ``[b, h, n, n]`` from ``q`` ``[b, h, n, d]`` and ``k_t``
        ``[b, h, d, n]``: scaled logits plus the relative-offset bias, softmax in float32 whatever
        the compute dtype (a no-op in float32)."""
        if self.scale != 1.0:  # 1.0 once folded into qkv (reparameterize)
            q = q * cast(jnp.asarray(self.scale), q.dtype)
        bias = self.attention_biases[...][:, relative_bias_index(self.window_size)]  # [h, n, n]
        logits = jnp.matmul(q, k_t).astype(jnp.float32) + bias.astype(jnp.float32)
        return jax.nn.softmax(logits, axis=-1).astype(dtype)

    def reparameterize(self):
        """Deploy form (``edgejax.deploy.fuse``): the query scale folded into ``qkv``'s query
        columns (weights and bias); ``scale`` becomes 1.0 and the multiply is skipped."""
        if self.scale == 1.0:
            return
        per_head = jnp.ones((2 * self.key_dim + self.val_dim,), jnp.float32)
        cols = jnp.tile(per_head.at[: self.key_dim].set(self.scale), self.num_heads)
        self.qkv.kernel[...] = self.qkv.kernel[...] * cols
        if self.qkv.bias is not None:
            self.qkv.bias[...] = self.qkv.bias[...] * cols
        self.scale = 1.0


class NormMlp(nnx.Module):
    """LayerNorm -> fc1 -> GELU -> dropout -> fc2 -> dropout. [..., dim] -> [..., dim]."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, *, dtype=None, rngs: nnx.Rngs):
        self.norm = LayerNorm(dim, eps=_LN_EPS, dtype=dtype)
        self.fc1 = Linear(dim, hidden, dtype=dtype, rngs=rngs)
        self.fc2 = Linear(hidden, dim, dtype=dtype, rngs=rngs)
        self.drop = Dropout(drop, rngs=rngs) if drop > 0 else None

    def _drop(self, x):
        return x if self.drop is None else self.drop(x)

    def __call__(self, x):
        x = self._drop(get_act(_ACT)(self.fc1(self.norm(x))))
        return self._drop(self.fc2(x))


class TinyVitBlock(nnx.Module):
    """x + WindowAttention(x); local dw conv + BN (no activation, no residual); x + MLP(x).

    Windows: the map is zero-padded at the bottom/right to a multiple of ``window_size``, split
    into non-overlapping windows, attended (the attention's LayerNorm runs on the padded tokens
    and they are not masked: that is what timm computes), merged and cropped back.
    [B, H, W, dim] -> [B, H, W, dim], any H, W.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        local_conv_size: int = 3,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if window_size <= 0:
            raise ValueError(f"TinyVitBlock: window_size must be > 0, got {window_size}")
        if dim % num_heads:
            raise ValueError(f"TinyVitBlock: dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.attn = Attention(
            dim, dim // num_heads, num_heads, window_size, attn_ratio=1.0, dtype=dtype, rngs=rngs
        )
        self.drop_path1 = DropPath(drop_path, rngs=rngs)
        self.mlp = NormMlp(dim, int(dim * mlp_ratio), drop, dtype=dtype, rngs=rngs)
        self.drop_path2 = DropPath(drop_path, rngs=rngs)
        self.local_conv = ConvNorm(
            dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim, dtype=dtype, rngs=rngs
        )

    def _window_attention(self, x):
        b, h, w, c = x.shape
        ws = self.window_size
        pad_b, pad_r = (-h) % ws, (-w) % ws
        if pad_b or pad_r:
            x = jnp.pad(x, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
        nh, nw = (h + pad_b) // ws, (w + pad_r) // ws
        if nh == nw == 1:  # one window (stages 2-3 at 224 px): attended as a map, no partition,
            # so exported graphs carry no 6-D transposes (onnxruntime ran each at ~5 ns per
            # element) and its qkv / proj are convs on the map
            return self.attn(x)[:, :h, :w]
        # Without padding the attention's LayerNorm (token-wise) runs before the partition: the
        # same values, and in an exported graph the norm keeps onnxruntime from folding a
        # preceding conv's layout change into the partition (a 6-D transpose with 7-float rows,
        # ~1 ms on tiny_vit_21m_224's 28x28 map, instead of a blocked reorder).
        normed = not (pad_b or pad_r)
        if normed:
            x = self.attn.norm(x)
        x = (
            x.reshape(b, nh, ws, nw, ws, c)
            .transpose(0, 1, 3, 2, 4, 5)
            .reshape(b * nh * nw, ws * ws, c)
        )
        x = self.attn(x, normed=normed)
        x = (
            x.reshape(b, nh, nw, ws, ws, c)
            .transpose(0, 1, 3, 2, 4, 5)
            .reshape(b, nh * ws, nw * ws, c)
        )
        return x[:, :h, :w]

    def __call__(self, x):
        x = x + self.drop_path1(self._window_attention(x))
        x = self.local_conv(x)
        return x + self.drop_path2(self.mlp(x))


class ConvStage(nnx.Module):
    """Stage 0 (timm ``ConvLayer``): MBConv blocks only, no downsample."""

    def __init__(
        self,
        dim: int,
        depth: int,
        expand_ratio: float,
        drop_path: list[float],
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.blocks = nnx.List(
            [
                MBConv(dim, dim, expand_ratio, drop_path[i], dtype=dtype, rngs=rngs)
                for i in range(depth)
            ]
        )

    def __call__(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


class TinyVitStage(nnx.Module):
    """Stages 1-3: PatchMerging (``downsample``) then TinyVitBlocks. [B,H,W,dim] ->
    [B, ceil(H/2), ceil(W/2), out_dim]."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop: float,
        drop_path: list[float],
        local_conv_size: int,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.downsample = PatchMerging(dim, out_dim, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List(
            [
                TinyVitBlock(
                    out_dim,
                    num_heads,
                    window_size,
                    mlp_ratio,
                    drop,
                    drop_path[i],
                    local_conv_size,
                    dtype=dtype,
                    rngs=rngs,
                )
                for i in range(depth)
            ]
        )

    def __call__(self, x):
        x = self.downsample(x)
        for blk in self.blocks:
            x = blk(x)
        return x


@dataclass(frozen=True)
class TinyVitConfig:
    """A TinyViT variant. ``drop_path_rate`` is timm's default stochastic-depth rate for training
    the variant; the builder applies it only when asked (``drop_path_rate=cfg.drop_path_rate``)
    and defaults to 0.0 so that a converted model runs deterministically in train mode."""

    embed_dims: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    window_sizes: tuple[int, int, int, int] = (7, 7, 14, 7)
    depths: tuple[int, int, int, int] = (2, 2, 6, 2)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    drop_path_rate: float = 0.0


class TinyVit(Classifier):
    """TinyViT classifier. ``model(x)``: x NHWC float ``[B, H, W, in_chans]`` normalised with
    ImageNet mean/std -> logits ``[B, num_classes]``. Any H, W >= 32 works (windows are padded);
    the feature map is ``[B, ceil(H/32), ceil(W/32), embed_dims[-1]]``."""

    timm_head = "head.fc"
    # attention_bias_idxs: timm's non-persistent buffer (present in the original MS checkpoints).
    timm_ignore = ("num_batches_tracked", "attention_bias_idxs")

    def __init__(
        self,
        cfg: TinyVitConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if (
            len(cfg.embed_dims) != len(cfg.depths)
            or len(cfg.num_heads) != len(cfg.depths)
            or len(cfg.window_sizes) != len(cfg.depths)
        ):
            raise ValueError(
                "TinyVitConfig: embed_dims, depths, num_heads and window_sizes must "
                f"have one entry per stage, got {cfg}"
            )
        self.cfg = cfg
        self.in_chans, self.num_classes = in_chans, num_classes
        self.num_features = cfg.embed_dims[-1]
        self.patch_embed = PatchEmbed(in_chans, cfg.embed_dims[0], dtype=dtype, rngs=rngs)
        # Linear stochastic-depth rule over all blocks, MBConv blocks included (as timm).
        total = sum(cfg.depths)
        dpr = [float(r) for r in np.linspace(0.0, drop_path_rate, total)] if total else []
        stages, start = [], 0
        for i, depth in enumerate(cfg.depths):
            rates = dpr[start : start + depth]
            start += depth
            if i == 0:
                stages.append(
                    ConvStage(
                        cfg.embed_dims[0],
                        depth,
                        cfg.mbconv_expand_ratio,
                        rates,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
            else:
                stages.append(
                    TinyVitStage(
                        cfg.embed_dims[i - 1],
                        cfg.embed_dims[i],
                        depth,
                        cfg.num_heads[i],
                        cfg.window_sizes[i],
                        cfg.mlp_ratio,
                        proj_drop_rate,
                        rates,
                        cfg.local_conv_size,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
        self.stages = nnx.List(stages)
        self.head = ClassifierHead(  # timm NormMlpClassifierHead without its hidden layer
            self.num_features,
            num_classes,
            drop_rate,
            norm=LayerNorm(self.num_features, eps=_LN_EPS, dtype=dtype),
            dtype=dtype,
            rngs=rngs,
        )

    def forward_features(self, x):
        """[B, H, W, in_chans] -> [B, ceil(H/32), ceil(W/32), num_features]."""
        x = self.patch_embed(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        """[B, h, w, C] -> logits [B, num_classes] (pooled, normalised [B, C] with pre_logits or
        num_classes=0)."""
        return self.head(x, pre_logits=pre_logits)

    def timm_remap(self, key: str) -> str | None:
        """Map keys of the original Microsoft Cream/TinyViT checkpoints onto timm's names
        (timm keys pass through unchanged). Pass the checkpoint's ``['model']`` dict.

        MS layout -> timm layout:
          ``patch_embed.seq.{0,2}.*``      -> ``patch_embed.conv{1,2}.*``
          ``layers.i.blocks.*``            -> ``stages.i.blocks.*``
          ``layers.i.downsample.*``        -> ``stages.{i+1}.downsample.*`` (MS runs the patch
                                              merging at the end of the previous stage)
          ``<Conv2d_BN>.c.*``              -> ``<ConvNorm>.conv.*``
          ``norm_head.*`` / ``head.*``     -> ``head.norm.*`` / ``head.fc.*``
        ``attention_bias_idxs`` is dropped through ``timm_ignore``. Bias tables of another window
        size are not resampled (timm bicubically resizes them): such keys fail the shape check.
        """
        if key.startswith("patch_embed.seq."):
            _, _, idx, rest = key.split(".", 3)
            conv = {"0": "conv1", "2": "conv2"}.get(idx)
            if conv is None:
                return key  # not a ConvNorm slot: left unexpected, so the strict load names it
            return f"patch_embed.{conv}." + _conv_bn_rename(rest)
        if key.startswith("layers."):
            _, idx, rest = key.split(".", 2)
            i = int(idx)
            if rest.startswith("downsample."):
                i += 1
            return f"stages.{i}." + _conv_bn_rename(rest)
        if key.startswith("norm_head."):
            return "head.norm." + key[len("norm_head.") :]
        if key in ("head.weight", "head.bias"):
            return "head.fc." + key[len("head.") :]
        return key


def _conv_bn_rename(rest: str) -> str:
    """Cream's ``Conv2d_BN`` names its conv ``c``; timm's ``ConvNorm`` names it ``conv``."""
    parts = rest.split(".")
    return ".".join("conv" if p == "c" else p for p in parts)


_CFG_FIELDS = {f.name for f in dataclasses.fields(TinyVitConfig)}


def build_tiny_vit(
    cfg: TinyVitConfig,
    *,
    num_classes: int = 1000,
    rngs: nnx.Rngs,
    dtype=None,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    proj_drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    **cfg_overrides,
) -> TinyVit:
    """Registry builder. ``drop_rate``: dropout before the classifier; ``proj_drop_rate``:
    dropout in the MLPs; ``drop_path_rate``: stochastic depth (timm trains with
    ``cfg.drop_path_rate``). Other keyword arguments replace fields of ``cfg`` (e.g.
    ``window_sizes=(8, 8, 16, 8)``)."""
    unknown = sorted(set(cfg_overrides) - _CFG_FIELDS)
    if unknown:
        raise TypeError(
            f"build_tiny_vit() got an unexpected keyword argument {unknown[0]!r} "
            f"(TinyViT options: drop_rate, proj_drop_rate, drop_path_rate, in_chans, "
            f"{', '.join(sorted(_CFG_FIELDS - {'drop_path_rate'}))})"
        )
    if cfg_overrides:
        cfg = dataclasses.replace(
            cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_overrides.items()}
        )
    return TinyVit(
        cfg,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        proj_drop_rate=proj_drop_rate,
        drop_path_rate=drop_path_rate,
        dtype=dtype,
        rngs=rngs,
    )


# ---------------------------------------------------------------------------------------------
# Variants (timm 1.0.31 names and default pretrained cfgs).
_5M = dict(embed_dims=(64, 128, 160, 320), num_heads=(2, 4, 5, 10))
_11M = dict(embed_dims=(64, 128, 256, 448), num_heads=(2, 4, 8, 14))
_21M = dict(embed_dims=(96, 192, 384, 576), num_heads=(3, 6, 12, 18))

# name: (config, info): what differs from _DEFAULT_INFO. timm's default tag for each name: the
# 224 px defaults are the ImageNet-22k distilled weights with a 21,841-class head (no ImageNet-1k
# top-1); the 1k tags are `.in1k` and `.dist_in22k_ft_in1k`. top1: none of the default tags has
# an ImageNet-1k figure in the porting spec's section 4 (its 384/512 figures are the paper's).
_DEFAULT_INFO = dict(crop_pct=0.95, crop_mode="center", interpolation="bicubic")
_IN22K = dict(hf_tag="dist_in22k", num_classes=21841)

VARIANTS: dict[str, tuple[TinyVitConfig, dict]] = {
    "tiny_vit_5m_224": (TinyVitConfig(**_5M, drop_path_rate=0.0), _IN22K),
    "tiny_vit_11m_224": (TinyVitConfig(**_11M, drop_path_rate=0.1), _IN22K),
    "tiny_vit_21m_224": (TinyVitConfig(**_21M, drop_path_rate=0.2), _IN22K),
    "tiny_vit_21m_384": (
        TinyVitConfig(**_21M, window_sizes=(12, 12, 24, 12), drop_path_rate=0.1),
        dict(hf_tag="dist_in22k_ft_in1k", input_size=(3, 384, 384), crop_pct=1.0),
    ),
    "tiny_vit_21m_512": (
        TinyVitConfig(**_21M, window_sizes=(16, 16, 32, 16), drop_path_rate=0.1),
        dict(
            hf_tag="dist_in22k_ft_in1k",
            input_size=(3, 512, 512),
            crop_pct=1.0,
            crop_mode="squash",
        ),
    ),
}

register_variants("tiny_vit", VARIANTS, build_tiny_vit, defaults=_DEFAULT_INFO)
