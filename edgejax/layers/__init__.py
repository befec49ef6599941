"""Layers shared by several model families (NHWC, timm numerics)."""

from .core import (
    BatchNorm2d,
    Conv2d,
    DropPath,
    Dropout,
    GroupNorm1,
    Identity,
    LayerNorm,
    Linear,
    DEPTHWISE_CHOICES,
    cast,
    depthwise_impl,
    get_padding,
    restore_depthwise_impl,
    set_depthwise_impl,
    train_rates,
)
from . import constants, init
from .blocks import SqueezeExcite, get_act, global_avg_pool, make_divisible
from .classifier import ClassifierHead

__all__ = [
    "BatchNorm2d",
    "ClassifierHead",
    "Conv2d",
    "DropPath",
    "Dropout",
    "GroupNorm1",
    "Identity",
    "LayerNorm",
    "Linear",
    "cast",
    "get_padding",
    "DEPTHWISE_CHOICES",
    "depthwise_impl",
    "set_depthwise_impl",
    "restore_depthwise_impl",
    "constants",
    "init",
    "SqueezeExcite",
    "get_act",
    "global_avg_pool",
    "make_divisible",
    "train_rates",
]
