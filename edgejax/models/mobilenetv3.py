"""MobileNetV3 (timm ``mobilenetv3.py``), Flax NNX, NHWC.

Paper: Searching for MobileNetV3, https://arxiv.org/abs/1905.02244.

Stem conv 3x3/2 + BN + act -> 6-7 stages of DepthwiseSeparable / InvertedResidual blocks (SE after
the depthwise conv, ReLU inside, hard-sigmoid gate) -> a 1x1 ConvBnAct -> the "efficient head":
**global pool first**, then ``conv_head`` 1x1 **with bias and no BN**, act, dropout, classifier.

Every timm 1.0.31 MobileNetV3 name is registered: ``mobilenetv3_{large_075,large_100,large_150d,
small_050,small_075,small_100,rw}`` and ``tf_mobilenetv3_{large_075,large_100,large_minimal_100,
small_075,small_100,small_minimal_100}`` (``tf_``: TF 'SAME' padding and BN eps 1e-3, for the
weights ported from TensorFlow).
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
    ds,
    goog_linear_init,
    ir,
    round_channels,
)
from .base import Classifier

__all__ = ["MobileNetV3", "MobileNetV3Config", "build_mobilenetv3"]

# MobileNetV3 SE: reduced width make_divisible(mid / 4, 8), ReLU inside, hard-sigmoid gate.
MNV3_SE = SeSpec(kind="se", from_exp=True, rounding="divisible8", act="relu", gate="hard_sigmoid")
# mobilenetv3_rw (timm's own early variant): round(mid / 4), the block's activation inside.
MNV3_RW_SE = SeSpec(kind="se", from_exp=True, rounding="round", act=None, gate="hard_sigmoid")

ARCH_LARGE = (
    (ds(1, k=3, s=1, c=16, act="relu"),),
    (ir(1, k=3, s=2, e=4, c=24, act="relu"), ir(1, k=3, s=1, e=3, c=24, act="relu")),
    (ir(3, k=5, s=2, e=3, c=40, se=0.25, act="relu"),),
    (ir(1, k=3, s=2, e=6, c=80), ir(1, k=3, s=1, e=2.5, c=80), ir(2, k=3, s=1, e=2.3, c=80)),
    (ir(2, k=3, s=1, e=6, c=112, se=0.25),),
    (ir(3, k=5, s=2, e=6, c=160, se=0.25),),
    (cn(1, k=1, s=1, c=960),),
)
ARCH_LARGE_MINIMAL = (  # no SE, 3x3 kernels only, ReLU everywhere
    (ds(1, k=3, s=1, c=16),),
    (ir(1, k=3, s=2, e=4, c=24), ir(1, k=3, s=1, e=3, c=24)),
    (ir(3, k=3, s=2, e=3, c=40),),
    (ir(1, k=3, s=2, e=6, c=80), ir(1, k=3, s=1, e=2.5, c=80), ir(2, k=3, s=1, e=2.3, c=80)),
    (ir(2, k=3, s=1, e=6, c=112),),
    (ir(3, k=3, s=2, e=6, c=160),),
    (cn(1, k=1, s=1, c=960),),
)
ARCH_SMALL = (
    (ds(1, k=3, s=2, c=16, se=0.25, act="relu"),),
    (ir(1, k=3, s=2, e=4.5, c=24, act="relu"), ir(1, k=3, s=1, e=3.67, c=24, act="relu")),
    (ir(1, k=5, s=2, e=4, c=40, se=0.25), ir(2, k=5, s=1, e=6, c=40, se=0.25)),
    (ir(2, k=5, s=1, e=3, c=48, se=0.25),),
    (ir(3, k=5, s=2, e=6, c=96, se=0.25),),
    (cn(1, k=1, s=1, c=576),),
)
ARCH_SMALL_MINIMAL = (
    (ds(1, k=3, s=2, c=16),),
    (ir(1, k=3, s=2, e=4.5, c=24), ir(1, k=3, s=1, e=3.67, c=24)),
    (ir(1, k=3, s=2, e=4, c=40), ir(2, k=3, s=1, e=6, c=40)),
    (ir(2, k=3, s=1, e=3, c=48),),
    (ir(3, k=3, s=2, e=6, c=96),),
    (cn(1, k=1, s=1, c=576),),
)
ARCH_RW = (  # like large, but the first DS block has no residual
    (ds(1, k=3, s=1, c=16, act="relu", noskip=True),),
    (ir(1, k=3, s=2, e=4, c=24, act="relu"), ir(1, k=3, s=1, e=3, c=24, act="relu")),
    (ir(3, k=5, s=2, e=3, c=40, se=0.25, act="relu"),),
    (ir(1, k=3, s=2, e=6, c=80), ir(1, k=3, s=1, e=2.5, c=80), ir(2, k=3, s=1, e=2.3, c=80)),
    (ir(2, k=3, s=1, e=6, c=112, se=0.25),),
    (ir(3, k=5, s=2, e=6, c=160, se=0.25),),
    (cn(1, k=1, s=1, c=960),),
)


@dataclass(frozen=True)
class MobileNetV3Config:
    """One MobileNetV3 variant.

    arch: stages of ``BlockDef`` (timm's arch_def); width/depth: channel and depth multipliers;
    fix_stem: keep the stem at ``stem_size`` (timm does when width < 0.75); num_features: width of
    ``conv_head`` (not scaled by ``width``); pad: None (symmetric) or 'same' (TF); act: default
    activation of blocks without their own.
    """

    arch: tuple[tuple[BlockDef, ...], ...]
    width: float = 1.0
    depth: float = 1.0
    stem_size: int = 16
    fix_stem: bool = False
    num_features: int = 1280
    head_bias: bool = True
    act: str = "hard_swish"
    se: SeSpec = field(default=MNV3_SE)
    bn_eps: float = 1e-5
    pad: str | None = None


class MobileNetV3(Classifier):
    """MobileNetV3 classifier. ``[B, H, W, in_chans]`` (normalised) -> ``[B, num_classes]``.

    ``forward_features`` returns the last block map ``[B, H/32, W/32, num_features]``;
    ``forward_head`` pools, applies ``conv_head`` + act (``head_hidden_size`` wide), dropout and
    the classifier (absent when ``num_classes == 0``: the pooled head features are returned).
    """

    timm_head = "classifier"
    fuse_pairs = (("conv_stem", "bn1"),)

    def __init__(
        self,
        cfg: MobileNetV3Config,
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
        round_chs = partial(round_channels, multiplier=cfg.width)
        stem = cfg.stem_size if cfg.fix_stem else round_chs(cfg.stem_size)
        self.conv_stem = conv(in_chans, stem, 3, 2, pad=cfg.pad, dtype=dtype, rngs=rngs)
        self.bn1 = BatchNorm2d(stem, cfg.bn_eps, dtype=dtype)
        self.blocks, self.num_features = build_stages(
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
        self.head_hidden_size = cfg.num_features
        self.conv_head = conv(
            self.num_features,
            cfg.num_features,
            1,
            bias=cfg.head_bias,
            pad=cfg.pad,
            dtype=dtype,
            rngs=rngs,
        )
        self.head_drop = Dropout(drop_rate, rngs=rngs) if drop_rate > 0 else None
        self.classifier = (
            Linear(
                cfg.num_features, num_classes, dtype=dtype, rngs=rngs, kernel_init=goog_linear_init
            )
            if num_classes > 0
            else None
        )

    def forward_features(self, x):
        """``[B, H, W, C_in] -> [B, H/32, W/32, num_features]``."""
        x = get_act(self.act)(self.bn1(self.conv_stem(x)))
        for stage in self.blocks:
            for block in stage:
                x = block(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        """``[B, h, w, num_features] -> [B, num_classes]`` (or ``[B, head_hidden_size]``)."""
        x = global_avg_pool(x, keepdims=True)
        x = get_act(self.act)(self.conv_head(x))
        x = x.reshape(x.shape[0], -1)
        if self.head_drop is not None:
            x = self.head_drop(x)
        if pre_logits or self.classifier is None:
            return x
        return self.classifier(x)


_OVERRIDES = ("drop_rate", "drop_path_rate", "in_chans")


def build_mobilenetv3(
    cfg: MobileNetV3Config,
    *,
    num_classes: int = 1000,
    rngs: nnx.Rngs,
    dtype=None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    in_chans: int = 3,
) -> MobileNetV3:
    """Registry builder: ``cfg`` plus the overrides ``drop_rate``, ``drop_path_rate``,
    ``in_chans``."""
    return MobileNetV3(
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
_TF_INFO = dict(interpolation="bilinear", mean=INCEPTION_MEAN, std=INCEPTION_STD)

VARIANTS: dict[str, tuple[MobileNetV3Config, dict]] = {
    "mobilenetv3_large_075": (
        MobileNetV3Config(ARCH_LARGE, width=0.75),
        dict(interpolation="bilinear"),
    ),
    "mobilenetv3_large_100": (
        MobileNetV3Config(ARCH_LARGE),
        dict(hf_hub_id="timm/mobilenetv3_large_100.ra_in1k", top1=75.784),
    ),
    "mobilenetv3_large_150d": (
        MobileNetV3Config(ARCH_LARGE, width=1.5, depth=1.2),
        dict(
            input_size=(3, 256, 256),
            test_input_size=(3, 320, 320),
            crop_pct=0.95,
            test_crop_pct=1.0,
            interpolation="bilinear",
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            hf_hub_id="timm/mobilenetv3_large_150d.ra4_e3600_r256_in1k",
        ),
    ),
    "mobilenetv3_rw": (
        MobileNetV3Config(ARCH_RW, head_bias=False, se=MNV3_RW_SE, bn_eps=1e-3),
        dict(hf_hub_id="timm/mobilenetv3_rw.rmsp_in1k"),
    ),
    "mobilenetv3_small_050": (
        MobileNetV3Config(ARCH_SMALL, width=0.5, fix_stem=True, num_features=1024),
        dict(hf_hub_id="timm/mobilenetv3_small_050.lamb_in1k"),
    ),
    "mobilenetv3_small_075": (
        MobileNetV3Config(ARCH_SMALL, width=0.75, num_features=1024),
        dict(hf_hub_id="timm/mobilenetv3_small_075.lamb_in1k"),
    ),
    "mobilenetv3_small_100": (
        MobileNetV3Config(ARCH_SMALL, num_features=1024),
        dict(hf_hub_id="timm/mobilenetv3_small_100.lamb_in1k"),
    ),
    "tf_mobilenetv3_large_075": (
        MobileNetV3Config(ARCH_LARGE, width=0.75, **_TF),
        dict(_TF_INFO, hf_hub_id="timm/tf_mobilenetv3_large_075.in1k"),
    ),
    "tf_mobilenetv3_large_100": (
        MobileNetV3Config(ARCH_LARGE, **_TF),
        dict(_TF_INFO, hf_hub_id="timm/tf_mobilenetv3_large_100.in1k", top1=75.510),
    ),
    "tf_mobilenetv3_large_minimal_100": (
        MobileNetV3Config(ARCH_LARGE_MINIMAL, act="relu", **_TF),
        dict(_TF_INFO, hf_hub_id="timm/tf_mobilenetv3_large_minimal_100.in1k"),
    ),
    "tf_mobilenetv3_small_075": (
        MobileNetV3Config(ARCH_SMALL, width=0.75, num_features=1024, **_TF),
        dict(_TF_INFO, hf_hub_id="timm/tf_mobilenetv3_small_075.in1k"),
    ),
    "tf_mobilenetv3_small_100": (
        MobileNetV3Config(ARCH_SMALL, num_features=1024, **_TF),
        dict(_TF_INFO, hf_hub_id="timm/tf_mobilenetv3_small_100.in1k"),
    ),
    "tf_mobilenetv3_small_minimal_100": (
        MobileNetV3Config(ARCH_SMALL_MINIMAL, act="relu", num_features=1024, **_TF),
        dict(_TF_INFO, hf_hub_id="timm/tf_mobilenetv3_small_minimal_100.in1k"),
    ),
}

register_variants("mobilenetv3", VARIANTS, build_mobilenetv3)
