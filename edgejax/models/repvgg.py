"""RepVGG (timm ``byobnet`` ``repvgg_*``), with re-parameterisation for deployment.

Training-time block: ``act(attn(BN(conv3x3(x)) + BN(conv1x1(x)) + BN_identity(x)))`` where the
identity branch exists only when in == out channels and stride 1. ``reparameterize()`` folds the
three branches into one 3x3 conv with bias (``reparam_conv``, timm's deploy name); outputs are
unchanged up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..layers import init
from ..layers import BatchNorm2d, ClassifierHead, Conv2d, DropPath, Identity, global_avg_pool
from ..registry import register_variants
from .base import Classifier

__all__ = ["RepVGG", "RepVGGConfig", "RepVggBlock"]


@dataclass(frozen=True)
class RepVGGConfig:
    depths: tuple[int, ...] = (4, 6, 16, 1)
    widths: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # multipliers of (64, 128, 256, 512)
    groups: int = 0  # >0: grouped 3x3/1x1 convs on odd-indexed blocks (the g4 variants)
    stem_chs: int = 64
    se_ratio: float = 0.0  # >0: squeeze-excite after the branches (repvgg_d2se)


# timm RepVggBlock.init_weights: BN gamma ~ N(0.1, 0.1), beta ~ N(0, 0.1) in every branch.
_BN_INIT = dict(scale_init=init.normal(0.1, 0.1), bias_init=init.normal(0.0, 0.1))


class ConvBn(nnx.Module):
    """conv (no bias) -> BatchNorm; timm's ``ConvNormAct`` with ``apply_act=False``."""

    fuse_pairs = (("conv", "bn"),)

    def __init__(self, in_chs, out_chs, k, stride, groups, *, dtype, rngs):
        self.conv = Conv2d(in_chs, out_chs, k, stride=stride, groups=groups, dtype=dtype, rngs=rngs)
        self.bn = BatchNorm2d(out_chs, dtype=dtype, rngs=rngs, **_BN_INIT)

    def __call__(self, x):
        return self.bn(self.conv(x))


class SEModule(nnx.Module):
    """timm ``SEModule``: mean -> fc1 (bias) -> ReLU -> fc2 (bias) -> sigmoid -> scale."""

    def __init__(self, chs, rd_chs, *, dtype, rngs):
        self.fc1 = Conv2d(chs, rd_chs, 1, bias=True, dtype=dtype, rngs=rngs)
        self.fc2 = Conv2d(rd_chs, chs, 1, bias=True, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        s = global_avg_pool(x, keepdims=True)
        return x * jax.nn.sigmoid(self.fc2(jax.nn.relu(self.fc1(s))))


def _fold_bn(kernel, bn: BatchNorm2d):
    """(HWIO kernel, BN) -> (kernel * gamma / std, beta - mean * gamma / std)."""
    std = jnp.sqrt(bn.var[...] + bn.eps)
    t = bn.scale[...] / std
    return kernel * t, bn.bias[...] - bn.mean[...] * t


class RepVggBlock(nnx.Module):
    """RepVGG block (timm names: conv_kxk, conv_1x1, identity, attn; deploy: reparam_conv)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        groups: int = 1,
        drop_path_rate: float = 0.0,
        se_ratio: float = 0.0,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.in_chs, self.out_chs, self.stride, self.groups = in_chs, out_chs, stride, groups
        self.dtype = dtype
        use_ident = in_chs == out_chs and stride == 1
        self.identity = (
            BatchNorm2d(out_chs, dtype=dtype, rngs=rngs, **_BN_INIT) if use_ident else None
        )
        self.conv_kxk = ConvBn(in_chs, out_chs, 3, stride, groups, dtype=dtype, rngs=rngs)
        self.conv_1x1 = ConvBn(in_chs, out_chs, 1, stride, groups, dtype=dtype, rngs=rngs)
        self.reparam_conv = nnx.data(None)  # data, so reparameterize() may assign a module
        self.drop_path = (
            DropPath(drop_path_rate, rngs=rngs) if drop_path_rate > 0 and use_ident else Identity()
        )
        if se_ratio > 0:
            self.attn = SEModule(
                out_chs, max(1, int(out_chs * se_ratio + 0.5)), dtype=dtype, rngs=rngs
            )
        else:
            self.attn = Identity()

    def __call__(self, x):
        if self.reparam_conv is not None:
            return jax.nn.relu(self.attn(self.reparam_conv(x)))
        y = self.conv_1x1(x) + self.conv_kxk(x)
        if self.identity is not None:
            y = self.drop_path(y) + self.identity(x)
        return jax.nn.relu(self.attn(y))

    def fused_kernel_bias(self):
        """The equivalent single 3x3 kernel (HWIO) and bias of the three branches (eval BN)."""
        k3, b3 = _fold_bn(self.conv_kxk.conv.kernel[...], self.conv_kxk.bn)
        k1, b1 = _fold_bn(self.conv_1x1.conv.kernel[...], self.conv_1x1.bn)
        kernel = k3 + jnp.pad(k1, ((1, 1), (1, 1), (0, 0), (0, 0)))
        bias = b3 + b1
        if self.identity is not None:
            in_per_group = self.in_chs // self.groups
            ident = np.zeros((3, 3, in_per_group, self.out_chs), np.float32)
            idx = np.arange(self.out_chs)
            ident[1, 1, idx % in_per_group, idx] = 1.0
            ki, bi = _fold_bn(jnp.asarray(ident), self.identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    def reparameterize(self) -> None:
        """Replace the branches by one biased 3x3 conv (in place), as timm's ``reparameterize``."""
        if self.reparam_conv is not None:
            return
        kernel, bias = self.fused_kernel_bias()
        conv = Conv2d(
            self.in_chs,
            self.out_chs,
            3,
            stride=self.stride,
            groups=self.groups,
            bias=True,
            dtype=self.dtype,
            rngs=nnx.Rngs(0),
        )
        conv.kernel[...] = kernel
        conv.bias[...] = bias
        self.reparam_conv = conv
        self.conv_kxk = self.conv_1x1 = self.identity = None
        self.drop_path = Identity()


class RepVGG(Classifier):
    """RepVGG: a RepVGG-block stem (s2), four stages (first block s2), avg pool, fc."""

    timm_head = "head.fc"
    size_divisor = 1
    min_size = 32

    def __init__(
        self,
        cfg: RepVGGConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.in_chans, self.num_classes, self.drop_rate = in_chans, num_classes, drop_rate
        self.stem = RepVggBlock(
            in_chans, cfg.stem_chs, stride=2, se_ratio=cfg.se_ratio, dtype=dtype, rngs=rngs
        )
        dpr = np.linspace(0.0, drop_path_rate, sum(cfg.depths)).tolist()
        prev, stages, idx = cfg.stem_chs, [], 0
        for depth, base, wf in zip(cfg.depths, (64, 128, 256, 512), cfg.widths):
            chs = int(base * wf)
            blocks = []
            for j in range(depth):
                groups = cfg.groups if (cfg.groups and (j + 1) % 2 == 0) else 1
                blocks.append(
                    RepVggBlock(
                        prev,
                        chs,
                        stride=2 if j == 0 else 1,
                        groups=groups,
                        drop_path_rate=dpr[idx],
                        se_ratio=cfg.se_ratio,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
                prev, idx = chs, idx + 1
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.num_features = prev
        self.head = ClassifierHead(prev, num_classes, drop_rate, dtype=dtype, rngs=rngs)

    def forward_features(self, x):
        x = self.stem(x)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        return self.head(x, pre_logits=pre_logits)


def build_repvgg(cfg: RepVGGConfig, *, num_classes, rngs, dtype, **overrides):
    """Registry builder: a :class:`RepVGG` from its config."""
    return RepVGG(cfg, num_classes=num_classes, rngs=rngs, dtype=dtype, **overrides)


_DEFAULT_INFO = dict(crop_pct=0.875, interpolation="bilinear", hf_tag="rvgg_in1k")
_A = (2, 4, 14, 1)
# name: (config, info): what differs from _DEFAULT_INFO (top1: timm's ImageNet-1k figure)
VARIANTS: dict[str, tuple[RepVGGConfig, dict]] = {
    "repvgg_a0": (RepVGGConfig(_A, (0.75, 0.75, 0.75, 2.5), stem_chs=48), dict(top1=72.426)),
    "repvgg_a1": (RepVGGConfig(_A, (1, 1, 1, 2.5)), dict(top1=74.474)),
    "repvgg_a2": (RepVGGConfig(_A, (1.5, 1.5, 1.5, 2.75)), dict(top1=76.488)),
    "repvgg_b0": (RepVGGConfig(widths=(1, 1, 1, 2.5)), dict(top1=75.158)),
    "repvgg_b1": (RepVGGConfig(widths=(2, 2, 2, 4)), {}),
    "repvgg_b1g4": (RepVGGConfig(widths=(2, 2, 2, 4), groups=4), {}),
    "repvgg_b2": (RepVGGConfig(widths=(2.5, 2.5, 2.5, 5)), {}),
    "repvgg_b2g4": (RepVGGConfig(widths=(2.5, 2.5, 2.5, 5), groups=4), {}),
    "repvgg_b3": (RepVGGConfig(widths=(3, 3, 3, 5)), {}),
    "repvgg_b3g4": (RepVGGConfig(widths=(3, 3, 3, 5), groups=4), {}),
    "repvgg_d2se": (
        RepVGGConfig((8, 14, 24, 1), (2.5, 2.5, 2.5, 5), se_ratio=0.0625),
        dict(input_size=(3, 320, 320), crop_pct=1.0),
    ),
}

register_variants("repvgg", VARIANTS, build_repvgg, defaults=_DEFAULT_INFO)
