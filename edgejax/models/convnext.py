"""ConvNeXt (timm ``convnext.py``, ``convnext_*`` variants), NHWC.

Architecture (timm names in brackets)::

    stem      [stem.0, stem.1]      patch stem: 4x4 s4 conv (bias) -> norm
              [stem.0 .. stem.3]    overlapping stems (``_ols``): 3x3 s2 conv -> (GELU) -> 3x3 s2 conv -> norm
    stage i   [stages.i.downsample.0/1]  (i > 0) norm -> 2x2 s2 conv (bias)
              [stages.i.blocks.j]   ConvNeXt blocks
    block     dw7x7 (bias) [conv_dw] -> norm [norm] -> fc1 4x [mlp.fc1] -> exact GELU -> fc2 [mlp.fc2]
              -> x gamma [gamma] (layer scale, init 1e-6) -> drop path -> + input
    head      pool -> norm on the pooled vector [head.norm] -> (fc + GELU [head.pre_logits.fc])
              -> dropout -> fc [head.fc]
              ``head_norm_first`` (``_hnf``): norm on the map [norm_pre] -> pool -> dropout -> fc

In NHWC the channels-first ``LayerNorm2d`` and the channels-last ``LayerNorm`` of timm are the same
op (normalise the last axis), so both use ``edgejax.layers.LayerNorm``; likewise the ``conv_mlp``
variants' 1x1-conv MLP is a dense layer on the last axis. It is kept as a 1x1 ``Conv2d`` so that
``to_timm`` gives back timm's 4-D ``[out, in, 1, 1]`` weights.

Norm kinds (``ConvNeXtConfig.norm``):
  ``layernorm``  (x - mean) / sqrt(var + eps) * weight + bias (timm LayerNorm / LayerNorm2d).
  ``rmsnorm``    x / sqrt(mean(x^2) + eps) * weight, no bias (timm RmsNorm / RmsNorm2d; ``_rms``).
  ``simplenorm`` x / sqrt(var_unbiased(x) + eps) * weight, no bias, **not centred** (timm
                 SimpleNorm / SimpleNorm2d; the ``zepto_rms`` variants despite their name).
The two weight-only norms are family-local leaves whose parameter is an ``nnx.Param`` named
``weight``, which the converter maps one to one (its "other Param attribute" rule).

Drop path rates rise linearly over all blocks: ``linspace(0, drop_path_rate, sum(depths))``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..layers import init as layer_init

from ..layers import (
    ClassifierHead,
    Conv2d,
    DropPath,
    LayerNorm,
    Linear,
    get_act,
    global_avg_pool,
    make_divisible,
    Dropout,
)
from ..layers.constants import INCEPTION_MEAN
from ..registry import register_variants
from .base import Classifier

__all__ = ["ConvNeXt", "ConvNeXtConfig", "ConvNeXtBlock", "ConvNeXtStage", "RmsNorm", "SimpleNorm"]


@dataclass(frozen=True)
class ConvNeXtConfig:
    """One ConvNeXt variant (timm's ``ConvNeXt.__init__`` arguments that the variants set).

    ``stem_type``: ``patch`` (k=s=``patch_size`` conv), ``overlap`` (two 3x3 s2 convs, the first
    to ``dims[0]``), ``overlap_tiered`` (the first to ``make_divisible(dims[0] // 2)``),
    ``overlap_act`` (``overlap`` with a GELU between the convs).
    """

    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    kernel_sizes: tuple[int, ...] = (7, 7, 7, 7)
    conv_mlp: bool = False
    norm: str = "layernorm"  # 'layernorm' | 'rmsnorm' | 'simplenorm'
    norm_eps: float = 1e-6
    stem_type: str = "patch"
    patch_size: int = 4
    head_norm_first: bool = False
    head_hidden_size: int | None = None
    ls_init_value: float | None = 1e-6
    conv_bias: bool = True
    mlp_ratio: float = 4.0
    act: str = "gelu"  # exact (erf) GELU


def _timm_trunc_normal(std: float = 0.02, lo: float = -2.0, hi: float = 2.0):
    """timm's ``trunc_normal_(std=.02)``: the bounds are absolute (+-2, i.e. +-100 std), so this
    is in effect a plain N(0, std^2), unlike Flax's ``truncated_normal`` (cut at +-2 std)."""
    return layer_init.truncated_normal(std, lo, hi)  # numpy-drawn when the key is concrete


_INIT = _timm_trunc_normal(0.02)


class RmsNorm(nnx.Module):
    """RMSNorm over the last axis: ``x * rsqrt(mean(x^2) + eps) * weight`` (no centring, no bias).

    timm's ``RmsNorm`` (channels last) and ``RmsNorm2d`` (channels first) in NHWC. The parameter is
    named ``weight`` (timm's name) so the converter maps ``<path>.weight`` to it directly.
    Statistics in float32 whatever the compute dtype. Input ``[..., C]`` -> same shape.
    """

    def __init__(self, num_features: int, eps: float = 1e-6, *, dtype=None):
        self.num_features, self.eps, self.dtype = num_features, eps, dtype
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        xf = x.astype(jnp.float32)
        ms = jnp.mean(jnp.square(xf), -1, keepdims=True)
        return (xf * jax.lax.rsqrt(ms + self.eps) * self.weight[...]).astype(dtype)


class SimpleNorm(nnx.Module):
    """timm's ``SimpleNorm`` / ``SimpleNorm2d`` over the last axis:
    ``x * rsqrt(var(x) + eps) * weight`` where ``var`` is the **unbiased** variance (``torch.var``
    default, divisor C - 1) and ``x`` is **not** centred. Parameter ``weight`` as in timm.
    Input ``[..., C]`` -> same shape.
    """

    def __init__(self, num_features: int, eps: float = 1e-6, *, dtype=None):
        if num_features < 2:
            raise ValueError(
                f"SimpleNorm needs at least 2 channels (unbiased variance), got {num_features}"
            )
        self.num_features, self.eps, self.dtype = num_features, eps, dtype
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, -1, keepdims=True)
        var = jnp.sum(jnp.square(xf - mean), -1, keepdims=True) / (self.num_features - 1)
        return (xf * jax.lax.rsqrt(var + self.eps) * self.weight[...]).astype(dtype)


_NORMS = ("layernorm", "rmsnorm", "simplenorm")
_STEMS = ("patch", "overlap", "overlap_tiered", "overlap_act")


def make_norm(kind: str, num_features: int, eps: float, dtype=None) -> nnx.Module:
    """The channel norm of a ConvNeXt variant (one kind per model: stem, downsample, block, head)."""
    if kind == "layernorm":
        return LayerNorm(num_features, eps, dtype=dtype)
    if kind == "rmsnorm":
        return RmsNorm(num_features, eps, dtype=dtype)
    if kind == "simplenorm":
        return SimpleNorm(num_features, eps, dtype=dtype)
    raise ValueError(
        f"unknown ConvNeXt norm {kind!r}; expected 'layernorm', 'rmsnorm' or 'simplenorm'"
    )


class Activation(nnx.Module):
    """A parameter-free activation that occupies an index of a timm ``nn.Sequential``
    (``stem.1`` of the ``overlap_act`` stem), so the following indices keep timm's numbering."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, x):
        return get_act(self.name)(x)


class Mlp(nnx.Module):
    """fc1 -> act -> fc2 on the channel axis (timm ``Mlp``; names ``fc1``, ``fc2``).

    ``conv``: the layers are 1x1 ``Conv2d`` (timm ``use_conv=True``, 4-D weights) instead of
    ``Linear``; the maths is the same in NHWC. ``[B, H, W, C]`` -> ``[B, H, W, out]``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int | None = None,
        *,
        act: str = "gelu",
        conv: bool = False,
        bias: bool = True,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        out_features = out_features or in_features
        if conv:
            self.fc1 = Conv2d(
                in_features,
                hidden,
                1,
                padding=0,
                bias=bias,
                dtype=dtype,
                rngs=rngs,
                kernel_init=_INIT,
            )
            self.fc2 = Conv2d(
                hidden,
                out_features,
                1,
                padding=0,
                bias=bias,
                dtype=dtype,
                rngs=rngs,
                kernel_init=_INIT,
            )
        else:
            self.fc1 = Linear(
                in_features, hidden, bias=bias, dtype=dtype, rngs=rngs, kernel_init=_INIT
            )
            self.fc2 = Linear(
                hidden, out_features, bias=bias, dtype=dtype, rngs=rngs, kernel_init=_INIT
            )
        self.act = act

    def __call__(self, x):
        return self.fc2(get_act(self.act)(self.fc1(x)))


class ConvNeXtBlock(nnx.Module):
    """dw conv -> norm -> MLP (ratio 4) -> layer scale ``gamma`` -> drop path -> + input.

    ``[B, H, W, C]`` -> ``[B, H, W, C]`` (stride 1, in == out: timm's shortcut is an identity for
    every registered variant).
    """

    def __init__(
        self,
        dim: int,
        *,
        kernel_size: int = 7,
        mlp_ratio: float = 4.0,
        conv_mlp: bool = False,
        conv_bias: bool = True,
        ls_init_value: float | None = 1e-6,
        norm: str = "layernorm",
        norm_eps: float = 1e-6,
        act: str = "gelu",
        drop_path: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.conv_dw = Conv2d(
            dim,
            dim,
            kernel_size,
            groups=dim,
            bias=conv_bias,
            dtype=dtype,
            rngs=rngs,
            kernel_init=_INIT,
        )
        self.norm = make_norm(norm, dim, norm_eps, dtype)
        self.mlp = Mlp(
            dim,
            int(mlp_ratio * dim),
            act=act,
            conv=conv_mlp,
            bias=conv_bias,
            dtype=dtype,
            rngs=rngs,
        )
        # Layer scale: a per-channel gain that starts tiny (1e-6) so each block begins as ~identity.
        self.gamma = (
            nnx.Param(jnp.full((dim,), ls_init_value, jnp.float32))
            if ls_init_value is not None
            else None
        )
        self.drop_path = DropPath(drop_path, rngs=rngs) if drop_path > 0 else None

    def __call__(self, x):
        shortcut = x
        y = self.mlp(self.norm(self.conv_dw(x)))
        if self.gamma is not None:
            y = y * self.gamma[...].astype(y.dtype)
        if self.drop_path is not None:
            y = self.drop_path(y)
        return y + shortcut

    def reparameterize(self):
        """Deploy form (``edgejax.deploy.fuse``): the layer scale folded into ``mlp.fc2``
        (``fc2(h) * gamma == h @ (W * gamma) + b * gamma``); ``gamma`` becomes None."""
        if self.gamma is None:
            return
        g = self.gamma[...]
        fc2 = self.mlp.fc2
        fc2.kernel[...] = fc2.kernel[...] * g  # output channels are the last axis of both forms
        if fc2.bias is not None:
            fc2.bias[...] = fc2.bias[...] * g
        self.gamma = None


class ConvNeXtStage(nnx.Module):
    """Optional downsample (norm -> 2x2 s2 conv, timm ``downsample.0/1``) then ``blocks``.

    ``[B, H, W, in]`` -> ``[B, H/2, W/2, out]`` with downsampling (floor for odd sizes, as timm's
    unpadded conv), else unchanged size.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        *,
        stride: int,
        depth: int,
        drop_path_rates: list[float],
        cfg: ConvNeXtConfig,
        kernel_size: int,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if in_chs != out_chs or stride > 1:
            self.downsample = nnx.List(
                [
                    make_norm(cfg.norm, in_chs, cfg.norm_eps, dtype),
                    Conv2d(
                        in_chs,
                        out_chs,
                        stride,
                        stride=stride,
                        padding=0,
                        bias=cfg.conv_bias,
                        dtype=dtype,
                        rngs=rngs,
                        kernel_init=_INIT,
                    ),
                ]
            )
        else:
            self.downsample = None
        self.blocks = nnx.List(
            [
                ConvNeXtBlock(
                    out_chs,
                    kernel_size=kernel_size,
                    mlp_ratio=cfg.mlp_ratio,
                    conv_mlp=cfg.conv_mlp,
                    conv_bias=cfg.conv_bias,
                    ls_init_value=cfg.ls_init_value,
                    norm=cfg.norm,
                    norm_eps=cfg.norm_eps,
                    act=cfg.act,
                    drop_path=drop_path_rates[i],
                    dtype=dtype,
                    rngs=rngs,
                )
                for i in range(depth)
            ]
        )

    def __call__(self, x):
        if self.downsample is not None:
            for layer in self.downsample:
                x = layer(x)
        for block in self.blocks:
            x = block(x)
        return x


class PreLogits(nnx.Module):
    """Hidden layer of ``NormMlpClassifierHead`` (timm ``head.pre_logits.fc`` + act)."""

    def __init__(self, in_features: int, hidden: int, act: str, *, dtype=None, rngs: nnx.Rngs):
        self.fc = Linear(in_features, hidden, dtype=dtype, rngs=rngs, kernel_init=_INIT)
        self.act = act

    def __call__(self, x):
        return get_act(self.act)(self.fc(x))


class NormMlpHead(nnx.Module):
    """timm ``NormMlpClassifierHead``: avg pool -> norm (on the pooled ``[B, C]`` vector) ->
    optional fc + GELU (``pre_logits``) -> dropout -> fc. ``[B, H, W, C]`` -> ``[B, classes]``."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden_size: int | None,
        drop_rate: float,
        norm: str,
        norm_eps: float,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.norm = make_norm(norm, in_features, norm_eps, dtype)
        self.pre_logits = (
            PreLogits(in_features, hidden_size, "gelu", dtype=dtype, rngs=rngs)
            if hidden_size
            else None
        )
        self.num_features = hidden_size or in_features
        self.drop = Dropout(drop_rate, rngs=rngs) if drop_rate > 0 else None
        self.fc = (
            Linear(self.num_features, num_classes, dtype=dtype, rngs=rngs, kernel_init=_INIT)
            if num_classes > 0
            else None
        )

    def __call__(self, x, pre_logits: bool = False):
        x = self.norm(global_avg_pool(x))
        if self.pre_logits is not None:
            x = self.pre_logits(x)
        if self.drop is not None:
            x = self.drop(x)
        if pre_logits or self.fc is None:
            return x
        return self.fc(x)


def drop_path_rates(drop_path_rate: float, depths) -> list[list[float]]:
    """Per-stage lists of per-block rates: ``linspace(0, rate, sum(depths))`` split by stage."""
    dpr = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
    out, i = [], 0
    for d in depths:
        out.append(dpr[i : i + d])
        i += d
    return out


class ConvNeXt(Classifier):
    """ConvNeXt classifier. ``model(x)``: NHWC float ``[B, H, W, in_chans]`` -> logits
    ``[B, num_classes]`` (``[B, num_features]`` pooled features when ``num_classes=0``).

    ``forward_features`` returns the stage-4 map ``[B, H/32, W/32, dims[-1]]`` (after ``norm_pre``
    for ``head_norm_first`` variants). Any size >= 32 px works (timm floors odd sizes).
    """

    timm_head = "head.fc"
    size_divisor = 1
    min_size = 32

    def __init__(
        self,
        cfg: ConvNeXtConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        if len(cfg.depths) != 4 or len(cfg.dims) != 4 or len(cfg.kernel_sizes) != 4:
            raise ValueError(
                f"ConvNeXt needs 4 stages, got depths={cfg.depths} dims={cfg.dims} "
                f"kernel_sizes={cfg.kernel_sizes}"
            )
        if cfg.norm not in _NORMS:
            raise ValueError(f"unknown ConvNeXt norm {cfg.norm!r}; expected one of {_NORMS}")
        if cfg.stem_type not in _STEMS:
            raise ValueError(f"unknown stem_type {cfg.stem_type!r}; expected one of {_STEMS}")
        if cfg.head_norm_first and cfg.head_hidden_size:
            raise ValueError("head_norm_first and head_hidden_size cannot be combined (as in timm)")
        self.cfg = cfg
        self.in_chans, self.num_classes, self.drop_rate = in_chans, num_classes, drop_rate
        dims = cfg.dims
        conv = dict(bias=cfg.conv_bias, dtype=dtype, rngs=rngs, kernel_init=_INIT)
        if cfg.stem_type == "patch":
            self.stem = nnx.List(
                [
                    Conv2d(
                        in_chans, dims[0], cfg.patch_size, stride=cfg.patch_size, padding=0, **conv
                    ),
                    make_norm(cfg.norm, dims[0], cfg.norm_eps, dtype),
                ]
            )
        elif cfg.stem_type in ("overlap", "overlap_tiered", "overlap_act"):
            mid = make_divisible(dims[0] // 2) if cfg.stem_type == "overlap_tiered" else dims[0]
            layers = [Conv2d(in_chans, mid, 3, stride=2, padding=1, **conv)]
            if cfg.stem_type == "overlap_act":
                layers.append(Activation(cfg.act))
            layers += [
                Conv2d(mid, dims[0], 3, stride=2, padding=1, **conv),
                make_norm(cfg.norm, dims[0], cfg.norm_eps, dtype),
            ]
            self.stem = nnx.List(layers)
        else:
            raise ValueError(
                f"unknown stem_type {cfg.stem_type!r}; expected 'patch', 'overlap', "
                f"'overlap_tiered' or 'overlap_act'"
            )

        dpr = drop_path_rates(drop_path_rate, cfg.depths)
        stages, prev = [], dims[0]
        for i in range(4):
            # The stem already reduces by 4; every later stage halves the resolution.
            stages.append(
                ConvNeXtStage(
                    prev,
                    dims[i],
                    stride=2 if i > 0 else 1,
                    depth=cfg.depths[i],
                    drop_path_rates=dpr[i],
                    cfg=cfg,
                    kernel_size=cfg.kernel_sizes[i],
                    dtype=dtype,
                    rngs=rngs,
                )
            )
            prev = dims[i]
        self.stages = nnx.List(stages)
        self.num_features = prev

        if cfg.head_norm_first:
            self.norm_pre = make_norm(cfg.norm, prev, cfg.norm_eps, dtype)
            self.head = ClassifierHead(  # norm_pre on the map, then pool -> dropout -> fc
                prev, num_classes, drop_rate, kernel_init=_INIT, dtype=dtype, rngs=rngs
            )
        else:
            self.norm_pre = None
            self.head = NormMlpHead(
                prev,
                num_classes,
                hidden_size=cfg.head_hidden_size,
                drop_rate=drop_rate,
                norm=cfg.norm,
                norm_eps=cfg.norm_eps,
                dtype=dtype,
                rngs=rngs,
            )
        self.head_hidden_size = self.head.num_features

    def forward_features(self, x):
        """``[B, H, W, in_chans]`` -> ``[B, H/32, W/32, num_features]``."""
        for layer in self.stem:
            x = layer(x)
        for stage in self.stages:
            x = stage(x)
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        """``[B, h, w, C]`` map -> logits ``[B, num_classes]``, or the pre-classifier vector
        ``[B, head_hidden_size]`` when ``pre_logits`` (or when there is no classifier)."""
        return self.head(x, pre_logits=pre_logits)

    # Facebook's original checkpoints (github.com/facebookresearch/ConvNeXt) use other names; timm
    # renames them in ``checkpoint_filter_fn``. Keys already in timm's layout pass unchanged.
    _FB_RULES = (
        (re.compile(r"^downsample_layers\.0\."), "stem."),
        (re.compile(r"^downsample_layers\.(\d+)\.(\d+)\."), r"stages.\1.downsample.\2."),
        (re.compile(r"^stages\.(\d+)\.(\d+)\."), r"stages.\1.blocks.\2."),
        (re.compile(r"\.dwconv\."), ".conv_dw."),
        (re.compile(r"\.pwconv(\d)\."), r".mlp.fc\1."),
        (re.compile(r"^head\.(weight|bias)$"), r"head.fc.\1"),
        (re.compile(r"^norm\.(weight|bias)$"), r"head.norm.\1"),
    )

    def timm_remap(self, key: str) -> str | None:
        """Rename a key of an original FB ConvNeXt checkpoint to timm's layout (identity for timm
        keys). The whole-dict cases of timm's filter (a ``model`` wrapper, OpenCLIP
        ``visual.trunk.`` prefixes) must be unwrapped by the caller."""
        for pattern, repl in self._FB_RULES:
            key = pattern.sub(repl, key)
        return key


def build_convnext(cfg: ConvNeXtConfig, *, num_classes, rngs, dtype, **overrides):
    """Registry builder: a :class:`ConvNeXt` from its config."""
    return ConvNeXt(cfg, num_classes=num_classes, rngs=rngs, dtype=dtype, **overrides)


# ----------------------------------------------------------------------------------------------
# Variants (timm 1.0.31 ``@register_model convnext_*``) and their default pretrained cfgs.

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = INCEPTION_MEAN  # = INCEPTION_STD

_DEFAULT_INFO = dict(test_input_size=(3, 288, 288), crop_pct=0.875, interpolation="bicubic")

_T = (3, 3, 9, 3)
_S = (3, 3, 27, 3)
_A = (2, 2, 6, 2)

# name: (config, info): what differs from the family's defaults (_DEFAULT_INFO); hf_tag: timm's
# default pretrained tag.
VARIANTS: dict[str, tuple[ConvNeXtConfig, dict]] = {
    "convnext_atto": (
        ConvNeXtConfig(_A, (40, 80, 160, 320), conv_mlp=True),
        dict(hf_tag="d2_in1k"),
    ),
    "convnext_atto_ols": (
        ConvNeXtConfig(_A, (40, 80, 160, 320), conv_mlp=True, stem_type="overlap_tiered"),
        dict(hf_tag="a2_in1k"),
    ),
    "convnext_atto_rms": (
        ConvNeXtConfig(_A, (40, 80, 160, 320), conv_mlp=True, norm="rmsnorm"),
        dict(test_input_size=(3, 256, 256)),
    ),
    "convnext_femto": (
        ConvNeXtConfig(_A, (48, 96, 192, 384), conv_mlp=True),
        dict(hf_tag="d1_in1k"),
    ),
    "convnext_femto_ols": (
        ConvNeXtConfig(_A, (48, 96, 192, 384), conv_mlp=True, stem_type="overlap_tiered"),
        dict(hf_tag="d1_in1k"),
    ),
    "convnext_pico": (
        ConvNeXtConfig(_A, (64, 128, 256, 512), conv_mlp=True),
        dict(hf_tag="d1_in1k"),
    ),
    "convnext_pico_ols": (
        ConvNeXtConfig(_A, (64, 128, 256, 512), conv_mlp=True, stem_type="overlap_tiered"),
        dict(hf_tag="d1_in1k", crop_pct=0.95),
    ),
    "convnext_nano": (
        ConvNeXtConfig((2, 2, 8, 2), (80, 160, 320, 640), conv_mlp=True),
        dict(hf_tag="in12k_ft_in1k", crop_pct=0.95),
    ),
    "convnext_nano_ols": (
        ConvNeXtConfig((2, 2, 8, 2), (80, 160, 320, 640), conv_mlp=True, stem_type="overlap"),
        dict(hf_tag="d1h_in1k", crop_pct=0.95),
    ),
    "convnext_zepto_rms": (
        ConvNeXtConfig((2, 2, 4, 2), (32, 64, 128, 256), conv_mlp=True, norm="simplenorm"),
        dict(hf_tag="ra4_e3600_r224_in1k", test_input_size=None, mean=_HALF, std=_HALF),
    ),
    "convnext_zepto_rms_ols": (
        ConvNeXtConfig(
            (2, 2, 4, 2),
            (32, 64, 128, 256),
            conv_mlp=True,
            norm="simplenorm",
            stem_type="overlap_act",
        ),
        dict(
            hf_tag="ra4_e3600_r224_in1k", test_input_size=None, crop_pct=0.9, mean=_HALF, std=_HALF
        ),
    ),
    "convnext_tiny": (
        ConvNeXtConfig(_T, (96, 192, 384, 768)),
        dict(hf_tag="in12k_ft_in1k", crop_pct=0.95, top1=84.192),
    ),
    "convnext_tiny_hnf": (
        ConvNeXtConfig(_T, (96, 192, 384, 768), conv_mlp=True, head_norm_first=True),
        dict(hf_tag="a2h_in1k", crop_pct=0.95),
    ),
    "convnext_small": (
        ConvNeXtConfig(_S, (96, 192, 384, 768)),
        dict(hf_tag="in12k_ft_in1k", crop_pct=0.95),
    ),
    "convnext_base": (ConvNeXtConfig(_S, (128, 256, 512, 1024)), dict(hf_tag="fb_in22k_ft_in1k")),
    "convnext_large": (ConvNeXtConfig(_S, (192, 384, 768, 1536)), dict(hf_tag="fb_in22k_ft_in1k")),
    "convnext_large_mlp": (
        ConvNeXtConfig(_S, (192, 384, 768, 1536), head_hidden_size=1536),
        dict(
            hf_tag="clip_laion2b_soup_ft_in12k_in1k_320",
            input_size=(3, 320, 320),
            test_input_size=None,
            crop_pct=1.0,
            mean=_CLIP_MEAN,
            std=_CLIP_STD,
        ),
    ),
    "convnext_xlarge": (
        ConvNeXtConfig(_S, (256, 512, 1024, 2048)),
        dict(hf_tag="fb_in22k_ft_in1k"),
    ),
    "convnext_xxlarge": (
        ConvNeXtConfig((3, 4, 30, 3), (384, 768, 1536, 3072), norm_eps=1e-5),
        dict(
            hf_tag="clip_laion2b_soup_ft_in1k",
            input_size=(3, 256, 256),
            test_input_size=None,
            crop_pct=1.0,
            mean=_CLIP_MEAN,
            std=_CLIP_STD,
        ),
    ),
}

register_variants("convnext", VARIANTS, build_convnext, defaults=_DEFAULT_INFO)
