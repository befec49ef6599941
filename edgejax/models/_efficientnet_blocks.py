"""Blocks shared by MobileNetV3 and EfficientNetV2 (timm's ``_efficientnet_blocks.py`` and
``_efficientnet_builder.py``), NHWC.

Architectures are typed data: a network is a tuple of stages, each a tuple of :class:`BlockDef`
(timm writes the same thing as strings such as ``'ir_r3_k5_s2_e3_c40_se0.25_nre'``, which
``ir(3, k=5, s=2, e=3, c=40, se=0.25, act='relu')`` spells here). :func:`build_stages` expands the
repeats (with timm's depth scaling), rounds the channels and instantiates the blocks, giving the
module tree timm's names (``blocks.<stage>.<block>.conv_pw`` ...), so timm checkpoints convert
one to one.

Every block applies BatchNorm and its activation as two steps (``act(bn(conv(x)))``), where
timm uses a fused ``BatchNormAct2d`` (same tensors, same names): the BatchNorm attributes are then
plain ``BatchNorm2d`` and each module declares its (conv, bn) pairs in ``fuse_pairs`` for
deployment-time folding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ..layers import init as layer_init

from ..layers import BatchNorm2d, Conv2d, DropPath, LayerNorm
from ..layers.blocks import SqueezeExcite, get_act, make_divisible

__all__ = [
    "BlockDef",
    "SeSpec",
    "ds",
    "ir",
    "er",
    "cn",
    "round_channels",
    "scale_stage_depth",
    "goog_conv_init",
    "goog_linear_init",
    "ConvBnAct",
    "DepthwiseSeparable",
    "InvertedResidual",
    "EdgeResidual",
    "GlobalContext",
    "build_stages",
]


# --------------------------------------------------------------------------------------------
# Architecture definitions as data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockDef:
    """One line of a timm arch definition: ``repeats`` blocks of one kind.

    kind: 'ds' DepthwiseSeparable, 'ir' InvertedResidual (MBConv), 'er' EdgeResidual
      (FusedMBConv), 'cn' ConvBnAct.
    out_chs: channels before the width multiplier is applied.
    act: None for the model's default activation, else a ``get_act`` name.
    noskip: drop the residual even when shapes allow it (ds/ir/er).
    skip: 'cn' blocks have a residual only when asked (timm's ``_skip``).
    """

    kind: str
    repeats: int
    kernel: int
    stride: int
    out_chs: int
    exp_ratio: float = 1.0
    se_ratio: float = 0.0
    act: str | None = None
    noskip: bool = False
    skip: bool = False

    def __post_init__(self):
        if self.kind not in ("ds", "ir", "er", "cn"):
            raise ValueError(f"unknown block kind {self.kind!r}; expected ds, ir, er or cn")
        if self.stride not in (1, 2):
            raise ValueError(f"block stride must be 1 or 2, got {self.stride}")
        if self.repeats < 1:
            raise ValueError(f"block repeats must be >= 1, got {self.repeats}")


def ds(
    r: int, *, k: int, s: int, c: int, se: float = 0.0, act: str | None = None, noskip: bool = False
) -> BlockDef:
    """timm ``ds_r{r}_k{k}_s{s}_c{c}[_se{se}][_n..][_noskip]``."""
    return BlockDef("ds", r, k, s, c, 1.0, se, act, noskip)


def ir(
    r: int,
    *,
    k: int,
    s: int,
    e: float,
    c: int,
    se: float = 0.0,
    act: str | None = None,
    noskip: bool = False,
) -> BlockDef:
    """timm ``ir_r{r}_k{k}_s{s}_e{e}_c{c}[_se{se}][_n..]``."""
    return BlockDef("ir", r, k, s, c, float(e), se, act, noskip)


def er(
    r: int,
    *,
    k: int,
    s: int,
    e: float,
    c: int,
    se: float = 0.0,
    act: str | None = None,
    noskip: bool = False,
) -> BlockDef:
    """timm ``er_r{r}_k{k}_s{s}_e{e}_c{c}``."""
    return BlockDef("er", r, k, s, c, float(e), se, act, noskip)


def cn(r: int, *, k: int, s: int, c: int, skip: bool = False, act: str | None = None) -> BlockDef:
    """timm ``cn_r{r}_k{k}_s{s}_c{c}[_skip]``."""
    return BlockDef("cn", r, k, s, c, 1.0, 0.0, act, skip=skip)


@dataclass(frozen=True)
class SeSpec:
    """How a family sizes and builds the attention module of its blocks.

    kind: 'se' (SqueezeExcite) or 'gc' (GlobalContext, gc_efficientnetv2_rw_t).
    from_exp: the ratio applies to the block's expanded width (MobileNetV3); otherwise it is
      divided by the expansion ratio first, i.e. taken relative to the block input (EfficientNet).
    rounding: 'round' (Python's round, timm's default), 'divisible8' (MobileNetV3's
      ``round_channels``) or 'divisible1' (GlobalContext: ``make_divisible(., 1, round_limit=0)``).
    act: force this activation inside SE (MobileNetV3: relu); None uses the block's.
    gate: 'sigmoid' or 'hard_sigmoid'.
    """

    kind: str = "se"
    from_exp: bool = False
    rounding: str = "round"
    act: str | None = None
    gate: str = "sigmoid"

    def reduced_chs(self, chs: int, se_ratio: float, exp_ratio: float) -> int:
        """Reduced width, with timm's exact arithmetic (ratio divided before multiplying)."""
        ratio = se_ratio if self.from_exp else se_ratio / exp_ratio
        if self.rounding == "round":
            return round(chs * ratio)
        if self.rounding == "divisible8":
            return make_divisible(chs * ratio, 8)
        if self.rounding == "divisible1":
            return make_divisible(chs * ratio, 1, round_limit=0.0)
        raise ValueError(f"unknown SE rounding {self.rounding!r}")


def round_channels(
    chs: float, multiplier: float = 1.0, divisor: int = 8, round_limit: float = 0.9
) -> int:
    """timm's ``round_channels``: scale by the width multiplier, round to a multiple of 8."""
    if not multiplier:
        return int(chs)
    return make_divisible(chs * multiplier, divisor, round_limit=round_limit)


def scale_stage_depth(
    defs: tuple[BlockDef, ...], multiplier: float, trunc: str = "ceil"
) -> list[BlockDef]:
    """Expand a stage's repeats into one ``BlockDef`` per block, scaling the depth like timm.

    The stage total is scaled (ceil by default) and redistributed over its definitions from the
    last to the first, so the first (often strided) definition is the least likely to grow.
    """
    repeats = [d.repeats for d in defs]
    num = sum(repeats)
    if trunc == "round":
        num_scaled = max(1, round(num * multiplier))
    else:
        num_scaled = int(math.ceil(num * multiplier))
    scaled = []
    for r in repeats[::-1]:
        rs = max(1, round(r / num * num_scaled))
        scaled.append(rs)
        num -= r
        num_scaled -= rs
    out = []
    for d, rep in zip(defs, scaled[::-1]):
        out.extend([replace(d, repeats=1)] * rep)
    return out


# --------------------------------------------------------------------------------------------
# Initialisers (timm's ``_init_weight_goog``, used when training from scratch)
# --------------------------------------------------------------------------------------------


goog_conv_init = layer_init.conv_fan_out_normal  # TF's EfficientNet conv init, by its timm name


def goog_linear_init(key, shape, dtype=jnp.float32):
    """U(-1/sqrt(fan_out), 1/sqrt(fan_out)) for the classifier, fan_out = classes."""
    limit = 1.0 / math.sqrt(shape[1])
    return layer_init.uniform(-limit, limit)(key, shape, dtype)


def conv(in_chs, out_chs, k, stride=1, *, groups=1, bias=False, pad=None, dtype=None, rngs):
    """A timm ``create_conv2d``: symmetric padding, or TF 'SAME' for ``pad='same'``."""
    return Conv2d(
        in_chs,
        out_chs,
        k,
        stride,
        padding=pad,
        groups=groups,
        bias=bias,
        dtype=dtype,
        rngs=rngs,
        kernel_init=goog_conv_init(groups),
    )


# --------------------------------------------------------------------------------------------
# Attention modules
# --------------------------------------------------------------------------------------------


class _SqueezeExcite(SqueezeExcite):
    """The shared ``SqueezeExcite`` (timm names ``conv_reduce``/``conv_expand``) with timm's
    EfficientNet initialisation. ``[B, H, W, C] -> [B, H, W, C]``."""

    def __init__(
        self, in_chs: int, rd_chs: int, act: str, gate: str, *, dtype=None, rngs: nnx.Rngs
    ):
        self.conv_reduce = conv(in_chs, rd_chs, 1, bias=True, dtype=dtype, rngs=rngs)
        self.conv_expand = conv(rd_chs, in_chs, 1, bias=True, dtype=dtype, rngs=rngs)
        self.act, self.gate = act, gate


class _ConvMlp(nnx.Module):
    """timm ``ConvMlp`` with a LayerNorm2d: fc1 (1x1, bias) -> LN(1e-6) -> act -> fc2 (1x1, bias)."""

    def __init__(self, in_chs: int, hidden: int, act: str, *, dtype=None, rngs: nnx.Rngs):
        self.fc1 = conv(in_chs, hidden, 1, bias=True, dtype=dtype, rngs=rngs)
        self.norm = LayerNorm(hidden, eps=1e-6, dtype=dtype)
        self.fc2 = conv(hidden, in_chs, 1, bias=True, dtype=dtype, rngs=rngs)
        self.act = act

    def __call__(self, x):
        return self.fc2(get_act(self.act)(self.norm(self.fc1(x))))


class GlobalContext(nnx.Module):
    """GCNet global-context attention as timm's ``GlobalContext`` (fuse_scale only).

    A 1x1 ``conv_attn`` scores every position; a softmax over H*W pools the input into a context
    vector ``[B, 1, 1, C]``, which ``mlp_scale`` turns into a sigmoid gate on the input.
    ``[B, H, W, C] -> [B, H, W, C]``.
    """

    def __init__(
        self, chs: int, rd_chs: int, act: str, gate: str = "sigmoid", *, dtype=None, rngs: nnx.Rngs
    ):
        # timm: kaiming_normal(fan_in, relu) on conv_attn = N(0, sqrt(2 / C)).
        self.conv_attn = Conv2d(
            chs,
            1,
            1,
            bias=True,
            dtype=dtype,
            rngs=rngs,
            kernel_init=layer_init.normal(0.0, math.sqrt(2.0 / chs)),
        )
        self.mlp_scale = _ConvMlp(chs, rd_chs, act, dtype=dtype, rngs=rngs)
        self.gate = gate

    def __call__(self, x):
        b, h, w, c = x.shape
        attn = self.conv_attn(x).reshape(b, h * w)
        attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).astype(x.dtype)
        context = jnp.einsum("bnc,bn->bc", x.reshape(b, h * w, c), attn).reshape(b, 1, 1, c)
        return x * get_act(self.gate)(self.mlp_scale(context))


def _make_se(spec: SeSpec | None, chs: int, bd: BlockDef, block_act: str, *, dtype, rngs):
    if spec is None or not bd.se_ratio:
        return None
    rd = spec.reduced_chs(chs, bd.se_ratio, bd.exp_ratio)
    act = spec.act or block_act
    if spec.kind == "gc":
        return GlobalContext(chs, rd, act, spec.gate, dtype=dtype, rngs=rngs)
    return _SqueezeExcite(chs, rd, act, spec.gate, dtype=dtype, rngs=rngs)


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


class _Block(nnx.Module):
    has_skip: bool

    def _residual(self, x, shortcut):
        return self.drop_path(x) + shortcut if self.has_skip else x


class ConvBnAct(_Block):
    """conv k x k (stride) -> BN -> act [+ input]. ``[B, H, W, in] -> [B, H/s, W/s, out]``."""

    fuse_pairs = (("conv", "bn1"),)

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel: int,
        stride: int = 1,
        *,
        skip: bool = False,
        act: str = "relu",
        pad=None,
        eps: float = 1e-5,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.has_skip = skip and stride == 1 and in_chs == out_chs
        self.conv = conv(in_chs, out_chs, kernel, stride, pad=pad, dtype=dtype, rngs=rngs)
        self.bn1 = BatchNorm2d(out_chs, eps, dtype=dtype)
        self.drop_path = DropPath(drop_path_rate, rngs=rngs)
        self.act = act

    def __call__(self, x):
        y = get_act(self.act)(self.bn1(self.conv(x)))
        return self._residual(y, x)


class DepthwiseSeparable(_Block):
    """dw k x k (stride) -> BN -> act -> [SE] -> pw 1x1 -> BN [-> act] [+ input].

    Name trap: here ``bn1`` follows ``conv_dw`` (in InvertedResidual it follows ``conv_pw``).
    ``[B, H, W, in] -> [B, H/s, W/s, out]``.
    """

    fuse_pairs = (("conv_dw", "bn1"), ("conv_pw", "bn2"))

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel: int,
        stride: int = 1,
        *,
        noskip: bool = False,
        pw_act: bool = False,
        act: str = "relu",
        se: SeSpec | None = None,
        bd: BlockDef | None = None,
        pad=None,
        eps: float = 1e-5,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.has_skip = stride == 1 and in_chs == out_chs and not noskip
        self.conv_dw = conv(
            in_chs, in_chs, kernel, stride, groups=in_chs, pad=pad, dtype=dtype, rngs=rngs
        )
        self.bn1 = BatchNorm2d(in_chs, eps, dtype=dtype)
        self.se = _make_se(se, in_chs, bd, act, dtype=dtype, rngs=rngs) if bd else None
        self.conv_pw = conv(in_chs, out_chs, 1, pad=pad, dtype=dtype, rngs=rngs)
        self.bn2 = BatchNorm2d(out_chs, eps, dtype=dtype)
        self.drop_path = DropPath(drop_path_rate, rngs=rngs)
        self.act, self.pw_act = act, pw_act

    def __call__(self, x):
        act = get_act(self.act)
        y = act(self.bn1(self.conv_dw(x)))
        if self.se is not None:
            y = self.se(y)
        y = self.bn2(self.conv_pw(y))
        if self.pw_act:
            y = act(y)
        return self._residual(y, x)


class InvertedResidual(_Block):
    """MBConv: pw 1x1 expand -> BN -> act -> dw k x k (stride) -> BN -> act -> [SE] -> pwl 1x1
    -> BN [+ input]. mid = make_divisible(in * exp_ratio). ``[B, H, W, in] -> [B, H/s, W/s, out]``.
    """

    fuse_pairs = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel: int,
        stride: int = 1,
        *,
        exp_ratio: float = 1.0,
        noskip: bool = False,
        act: str = "relu",
        se: SeSpec | None = None,
        bd: BlockDef | None = None,
        pad=None,
        eps: float = 1e-5,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.has_skip = in_chs == out_chs and stride == 1 and not noskip
        mid = make_divisible(in_chs * exp_ratio)
        self.conv_pw = conv(in_chs, mid, 1, pad=pad, dtype=dtype, rngs=rngs)
        self.bn1 = BatchNorm2d(mid, eps, dtype=dtype)
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid, pad=pad, dtype=dtype, rngs=rngs)
        self.bn2 = BatchNorm2d(mid, eps, dtype=dtype)
        self.se = _make_se(se, mid, bd, act, dtype=dtype, rngs=rngs) if bd else None
        self.conv_pwl = conv(mid, out_chs, 1, pad=pad, dtype=dtype, rngs=rngs)
        self.bn3 = BatchNorm2d(out_chs, eps, dtype=dtype)
        self.drop_path = DropPath(drop_path_rate, rngs=rngs)
        self.act = act

    def __call__(self, x):
        act = get_act(self.act)
        y = act(self.bn1(self.conv_pw(x)))
        y = act(self.bn2(self.conv_dw(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.bn3(self.conv_pwl(y))
        return self._residual(y, x)


class EdgeResidual(_Block):
    """FusedMBConv: k x k expand conv (stride) -> BN -> act -> [SE] -> pwl 1x1 -> BN [+ input].
    mid = make_divisible(in * exp_ratio). ``[B, H, W, in] -> [B, H/s, W/s, out]``."""

    fuse_pairs = (("conv_exp", "bn1"), ("conv_pwl", "bn2"))

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel: int,
        stride: int = 1,
        *,
        exp_ratio: float = 1.0,
        noskip: bool = False,
        act: str = "relu",
        se: SeSpec | None = None,
        bd: BlockDef | None = None,
        pad=None,
        eps: float = 1e-5,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.has_skip = in_chs == out_chs and stride == 1 and not noskip
        mid = make_divisible(in_chs * exp_ratio)
        self.conv_exp = conv(in_chs, mid, kernel, stride, pad=pad, dtype=dtype, rngs=rngs)
        self.bn1 = BatchNorm2d(mid, eps, dtype=dtype)
        self.se = _make_se(se, mid, bd, act, dtype=dtype, rngs=rngs) if bd else None
        self.conv_pwl = conv(mid, out_chs, 1, pad=pad, dtype=dtype, rngs=rngs)
        self.bn2 = BatchNorm2d(out_chs, eps, dtype=dtype)
        self.drop_path = DropPath(drop_path_rate, rngs=rngs)
        self.act = act

    def __call__(self, x):
        y = get_act(self.act)(self.bn1(self.conv_exp(x)))
        if self.se is not None:
            y = self.se(y)
        y = self.bn2(self.conv_pwl(y))
        return self._residual(y, x)


def build_stages(
    in_chs: int,
    arch,
    *,
    round_chs: Callable[[float], int],
    depth_multiplier: float | tuple[float, ...] = 1.0,
    act: str,
    se: SeSpec | None,
    pad=None,
    eps: float = 1e-5,
    drop_path_rate: float = 0.0,
    dtype=None,
    rngs: nnx.Rngs,
) -> tuple[nnx.List, int]:
    """Instantiate timm's ``EfficientNetBuilder`` output: ``blocks[stage][block]``.

    Only the first block of a stage keeps its stride; stochastic depth grows linearly with the
    global block index (``rate * idx / total``); block widths go through ``round_chs``.
    Returns (``nnx.List`` of ``nnx.List`` of blocks, output channels).
    """
    if isinstance(depth_multiplier, (int, float)):
        depth_multiplier = (float(depth_multiplier),) * len(arch)
    if len(depth_multiplier) != len(arch):
        raise ValueError(f"{len(depth_multiplier)} depth multipliers for {len(arch)} stages")
    expanded = [scale_stage_depth(tuple(stage), m) for stage, m in zip(arch, depth_multiplier)]
    total = sum(len(s) for s in expanded)
    idx = 0
    stages = []
    for stage in expanded:
        blocks = []
        for j, bd in enumerate(stage):
            stride = bd.stride if j == 0 else 1
            out_chs = round_chs(bd.out_chs)
            common = dict(
                act=bd.act or act,
                pad=pad,
                eps=eps,
                drop_path_rate=drop_path_rate * idx / total,
                dtype=dtype,
                rngs=rngs,
            )
            if bd.kind == "cn":
                block = ConvBnAct(in_chs, out_chs, bd.kernel, stride, skip=bd.skip, **common)
            elif bd.kind == "ds":
                block = DepthwiseSeparable(
                    in_chs, out_chs, bd.kernel, stride, noskip=bd.noskip, se=se, bd=bd, **common
                )
            elif bd.kind == "ir":
                block = InvertedResidual(
                    in_chs,
                    out_chs,
                    bd.kernel,
                    stride,
                    exp_ratio=bd.exp_ratio,
                    noskip=bd.noskip,
                    se=se,
                    bd=bd,
                    **common,
                )
            else:
                block = EdgeResidual(
                    in_chs,
                    out_chs,
                    bd.kernel,
                    stride,
                    exp_ratio=bd.exp_ratio,
                    noskip=bd.noskip,
                    se=se,
                    bd=bd,
                    **common,
                )
            blocks.append(block)
            in_chs = out_chs
            idx += 1
        stages.append(nnx.List(blocks))
    return nnx.List(stages), in_chs
