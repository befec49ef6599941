"""EfficientNetV2 (timm ``efficientnet.py``, the V2 entries), Flax NNX, NHWC.

Paper: EfficientNetV2: Smaller Models and Faster Training, https://arxiv.org/abs/2104.00298.

Stem conv 3x3/2 + BN + SiLU -> ConvBnAct (with residual) / EdgeResidual (FusedMBConv) stages ->
InvertedResidual (MBConv) stages with SE -> ``conv_head`` 1x1 + BN (``bn2``) + SiLU -> pool ->
dropout -> classifier.

The SE width is ``round(block_in * 0.25)``: timm divides the 0.25 ratio by the expansion ratio
and applies it to the expanded width, i.e. the reduction is taken from the **block input**.

Registered (timm 1.0.31 names): ``efficientnetv2_{rw_t,rw_s,rw_m,s,m,l,xl}``,
``tf_efficientnetv2_{s,m,l,xl,b0,b1,b2,b3}`` (``tf_``: TF 'SAME' padding, BN eps 1e-3) and
``gc_efficientnetv2_rw_t`` (global-context attention in place of SE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from flax import nnx

from ..layers import BatchNorm2d, Linear, Dropout
from ..layers.blocks import get_act, global_avg_pool
from ..layers.constants import INCEPTION_MEAN, INCEPTION_STD
from ..registry import register_variants
from ._efficientnet_blocks import (
    BlockDef,
    SeSpec,
    build_stages,
    cn,
    conv,
    er,
    goog_linear_init,
    ir,
    round_channels,
)
from .base import Classifier

__all__ = ["EfficientNet", "EfficientNetConfig", "build_efficientnet"]

EFFNET_SE = SeSpec(kind="se", from_exp=False, rounding="round", act=None, gate="sigmoid")
# gc_efficientnetv2_rw_t: GlobalContext sized make_divisible(block_in * 0.25, 1, round_limit=0).
EFFNET_GC = SeSpec(kind="gc", from_exp=False, rounding="divisible1", act=None, gate="sigmoid")

ARCH_V2_BASE = (  # tf_efficientnetv2_b0..b3
    (cn(1, k=3, s=1, c=16, skip=True),),
    (er(2, k=3, s=2, e=4, c=32),),
    (er(2, k=3, s=2, e=4, c=48),),
    (ir(3, k=3, s=2, e=4, c=96, se=0.25),),
    (ir(5, k=3, s=1, e=6, c=112, se=0.25),),
    (ir(8, k=3, s=2, e=6, c=192, se=0.25),),
)
ARCH_V2_S = (
    (cn(2, k=3, s=1, c=24, skip=True),),
    (er(4, k=3, s=2, e=4, c=48),),
    (er(4, k=3, s=2, e=4, c=64),),
    (ir(6, k=3, s=2, e=4, c=128, se=0.25),),
    (ir(9, k=3, s=1, e=6, c=160, se=0.25),),
    (ir(15, k=3, s=2, e=6, c=256, se=0.25),),
)
# timm's pre-release "rw" small: an EdgeResidual first stage and a wider last stage.
ARCH_V2_RW_S = (
    ((er(2, k=3, s=1, e=1, c=24),),) + ARCH_V2_S[1:-1] + ((ir(15, k=3, s=2, e=6, c=272, se=0.25),),)
)
ARCH_V2_M = (
    (cn(3, k=3, s=1, c=24, skip=True),),
    (er(5, k=3, s=2, e=4, c=48),),
    (er(5, k=3, s=2, e=4, c=80),),
    (ir(7, k=3, s=2, e=4, c=160, se=0.25),),
    (ir(14, k=3, s=1, e=6, c=176, se=0.25),),
    (ir(18, k=3, s=2, e=6, c=304, se=0.25),),
    (ir(5, k=3, s=1, e=6, c=512, se=0.25),),
)
ARCH_V2_L = (
    (cn(4, k=3, s=1, c=32, skip=True),),
    (er(7, k=3, s=2, e=4, c=64),),
    (er(7, k=3, s=2, e=4, c=96),),
    (ir(10, k=3, s=2, e=4, c=192, se=0.25),),
    (ir(19, k=3, s=1, e=6, c=224, se=0.25),),
    (ir(25, k=3, s=2, e=6, c=384, se=0.25),),
    (ir(7, k=3, s=1, e=6, c=640, se=0.25),),
)
ARCH_V2_XL = (
    (cn(4, k=3, s=1, c=32, skip=True),),
    (er(8, k=3, s=2, e=4, c=64),),
    (er(8, k=3, s=2, e=4, c=96),),
    (ir(16, k=3, s=2, e=4, c=192, se=0.25),),
    (ir(24, k=3, s=1, e=6, c=256, se=0.25),),
    (ir(32, k=3, s=2, e=6, c=512, se=0.25),),
    (ir(8, k=3, s=1, e=6, c=640, se=0.25),),
)


@dataclass(frozen=True)
class EfficientNetConfig:
    """One EfficientNetV2 variant.

    arch: stages of ``BlockDef``; width: channel multiplier (stem, blocks, and the head when
    ``round_head``); depth: depth multiplier, one float or one per stage; round_limit: timm's
    ``round_channels`` limit (0 for the B0-B3 family); num_features: ``conv_head`` width before
    rounding; pad: None (symmetric) or 'same' (TF).
    """

    arch: tuple[tuple[BlockDef, ...], ...]
    width: float = 1.0
    depth: float | tuple[float, ...] = 1.0
    stem_size: int = 24
    num_features: int = 1280
    round_head: bool = True
    round_limit: float = 0.9
    act: str = "silu"
    se: SeSpec = field(default=EFFNET_SE)
    bn_eps: float = 1e-5
    pad: str | None = None


class EfficientNet(Classifier):
    """EfficientNetV2 classifier. ``[B, H, W, in_chans]`` (normalised) -> ``[B, num_classes]``.

    ``forward_features`` ends with ``conv_head`` + ``bn2`` + act: ``[B, H/32, W/32,
    num_features]``; ``forward_head`` pools, applies dropout and the classifier (absent when
    ``num_classes == 0``: the pooled ``num_features`` vector is returned).
    """

    timm_head = "classifier"
    fuse_pairs = (("conv_stem", "bn1"), ("conv_head", "bn2"))

    def __init__(
        self,
        cfg: EfficientNetConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.cfg = cfg
        self.in_chans, self.num_classes = in_chans, num_classes
        self.act = cfg.act
        round_chs = partial(round_channels, multiplier=cfg.width, round_limit=cfg.round_limit)
        stem = round_chs(cfg.stem_size)
        self.conv_stem = conv(in_chans, stem, 3, 2, pad=cfg.pad, dtype=dtype, rngs=rngs)
        self.bn1 = BatchNorm2d(stem, cfg.bn_eps, dtype=dtype)
        self.blocks, head_in = build_stages(
            stem,
            cfg.arch,
            round_chs=round_chs,
            depth_multiplier=cfg.depth,
            act=cfg.act,
            se=cfg.se,
            pad=cfg.pad,
            eps=cfg.bn_eps,
            drop_path_rate=drop_path_rate,
            dtype=dtype,
            rngs=rngs,
        )
        self.num_features = round_chs(cfg.num_features) if cfg.round_head else cfg.num_features
        self.head_hidden_size = self.num_features
        self.conv_head = conv(head_in, self.num_features, 1, pad=cfg.pad, dtype=dtype, rngs=rngs)
        self.bn2 = BatchNorm2d(self.num_features, cfg.bn_eps, dtype=dtype)
        self.head_drop = Dropout(drop_rate, rngs=rngs) if drop_rate > 0 else None
        self.classifier = (
            Linear(
                self.num_features, num_classes, dtype=dtype, rngs=rngs, kernel_init=goog_linear_init
            )
            if num_classes > 0
            else None
        )

    def forward_features(self, x):
        """``[B, H, W, C_in] -> [B, H/32, W/32, num_features]``."""
        act = get_act(self.act)
        x = act(self.bn1(self.conv_stem(x)))
        for stage in self.blocks:
            for block in stage:
                x = block(x)
        return act(self.bn2(self.conv_head(x)))

    def forward_head(self, x, pre_logits: bool = False):
        """``[B, h, w, num_features] -> [B, num_classes]`` (or pooled ``[B, num_features]``)."""
        x = global_avg_pool(x)
        if self.head_drop is not None:
            x = self.head_drop(x)
        if pre_logits or self.classifier is None:
            return x
        return self.classifier(x)


def build_efficientnet(
    cfg: EfficientNetConfig,
    *,
    num_classes: int = 1000,
    rngs: nnx.Rngs,
    dtype=None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    in_chans: int = 3,
) -> EfficientNet:
    """Registry builder: ``cfg`` plus the overrides ``drop_rate``, ``drop_path_rate``,
    ``in_chans``."""
    return EfficientNet(
        cfg,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        dtype=dtype,
        rngs=rngs,
    )


# --------------------------------------------------------------------------------------------
# Variants (timm 1.0.31 names) and timm's default pretrained cfg for each
# --------------------------------------------------------------------------------------------

_TF = dict(bn_eps=1e-3, pad="same")
_INCEPTION = dict(mean=INCEPTION_MEAN, std=INCEPTION_STD)
_V2_BASE = dict(arch=ARCH_V2_BASE, stem_size=32, round_limit=0.0)
_V2_FIXED_HEAD = dict(round_head=False)  # m / l / xl: conv_head is 1280 whatever the width


def _info(size: int, test: int, crop: float = 1.0, **kw) -> dict:
    return dict(
        input_size=(3, size, size),
        test_input_size=(3, test, test),
        crop_pct=crop,
        interpolation="bicubic",
        **kw,
    )


VARIANTS: dict[str, tuple[EfficientNetConfig, dict]] = {
    "efficientnetv2_rw_t": (
        EfficientNetConfig(ARCH_V2_S, width=0.8, depth=0.9),
        _info(224, 288, hf_hub_id="timm/efficientnetv2_rw_t.ra2_in1k"),
    ),
    "gc_efficientnetv2_rw_t": (
        EfficientNetConfig(ARCH_V2_S, width=0.8, depth=0.9, se=EFFNET_GC),
        _info(224, 288, hf_hub_id="timm/gc_efficientnetv2_rw_t.agc_in1k"),
    ),
    "efficientnetv2_rw_s": (
        EfficientNetConfig(ARCH_V2_RW_S, num_features=1792),
        _info(288, 384, hf_hub_id="timm/efficientnetv2_rw_s.ra2_in1k"),
    ),
    "efficientnetv2_rw_m": (
        EfficientNetConfig(
            ARCH_V2_RW_S, width=1.2, depth=(1.2,) * 4 + (1.6,) * 2, num_features=1792
        ),
        _info(320, 416, hf_hub_id="timm/efficientnetv2_rw_m.agc_in1k"),
    ),
    "efficientnetv2_s": (EfficientNetConfig(ARCH_V2_S), _info(288, 384)),
    "efficientnetv2_m": (EfficientNetConfig(ARCH_V2_M, **_V2_FIXED_HEAD), _info(320, 416)),
    "efficientnetv2_l": (
        EfficientNetConfig(ARCH_V2_L, stem_size=32, **_V2_FIXED_HEAD),
        _info(384, 480),
    ),
    "efficientnetv2_xl": (
        EfficientNetConfig(ARCH_V2_XL, stem_size=32, **_V2_FIXED_HEAD),
        _info(384, 512),
    ),
    "tf_efficientnetv2_s": (
        EfficientNetConfig(ARCH_V2_S, **_TF),
        _info(
            300, 384, hf_hub_id="timm/tf_efficientnetv2_s.in21k_ft_in1k", top1=84.332, **_INCEPTION
        ),
    ),
    "tf_efficientnetv2_m": (
        EfficientNetConfig(ARCH_V2_M, **_V2_FIXED_HEAD, **_TF),
        _info(384, 480, hf_hub_id="timm/tf_efficientnetv2_m.in21k_ft_in1k", **_INCEPTION),
    ),
    "tf_efficientnetv2_l": (
        EfficientNetConfig(ARCH_V2_L, stem_size=32, **_V2_FIXED_HEAD, **_TF),
        _info(384, 480, hf_hub_id="timm/tf_efficientnetv2_l.in21k_ft_in1k", **_INCEPTION),
    ),
    "tf_efficientnetv2_xl": (
        EfficientNetConfig(ARCH_V2_XL, stem_size=32, **_V2_FIXED_HEAD, **_TF),
        _info(384, 512, hf_hub_id="timm/tf_efficientnetv2_xl.in21k_ft_in1k", **_INCEPTION),
    ),
    "tf_efficientnetv2_b0": (
        EfficientNetConfig(**_V2_BASE, **_TF),
        _info(192, 224, 0.875, hf_hub_id="timm/tf_efficientnetv2_b0.in1k"),
    ),
    "tf_efficientnetv2_b1": (
        EfficientNetConfig(**_V2_BASE, depth=1.1, **_TF),
        _info(192, 240, 0.882, hf_hub_id="timm/tf_efficientnetv2_b1.in1k"),
    ),
    "tf_efficientnetv2_b2": (
        EfficientNetConfig(**_V2_BASE, width=1.1, depth=1.2, **_TF),
        _info(208, 260, 0.89, hf_hub_id="timm/tf_efficientnetv2_b2.in1k"),
    ),
    "tf_efficientnetv2_b3": (
        EfficientNetConfig(**_V2_BASE, width=1.2, depth=1.4, **_TF),
        _info(240, 300, 0.9, hf_hub_id="timm/tf_efficientnetv2_b3.in21k_ft_in1k", **_INCEPTION),
    ),
}

register_variants("efficientnet", VARIANTS, build_efficientnet)
