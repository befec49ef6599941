"""Deployment transforms: ``fuse(model)`` returns an inference model with the same outputs.

Two mechanisms, both declared by the modules themselves:
- a module with a ``reparameterize()`` method (RepVGG blocks) rewrites itself into its
  single-branch deploy form;
- a module with a class attribute ``fuse_pairs = (("conv", "bn"), ...)`` applies a ``Conv2d``
  directly followed by a ``BatchNorm2d``; the pair is folded into one biased conv
  (``W * gamma / sqrt(var + eps)``, ``beta - mean * gamma / sqrt(var + eps)``) and the
  BatchNorm replaced by ``Identity``.
The fused model is for inference only (eval mode; BatchNorm statistics are baked in).
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from .layers import BatchNorm2d, Conv2d, Identity

__all__ = ["fuse", "fold_bn_into_conv"]


def fold_bn_into_conv(conv: Conv2d, bn: BatchNorm2d) -> Conv2d:
    """A new biased ``Conv2d`` equal to ``bn(conv(x))`` with BatchNorm in eval mode."""
    if conv.out_chs != bn.num_features:
        raise ValueError(f"cannot fold BatchNorm({bn.num_features}) into a conv with "
                         f"{conv.out_chs} outputs")
    t = bn.scale[...] / jnp.sqrt(bn.var[...] + bn.eps)
    bias = bn.bias[...] - bn.mean[...] * t
    if conv.bias is not None:
        bias = bias + conv.bias[...] * t
    kh, kw = conv.kernel.shape[:2]
    fused = Conv2d(conv.in_chs, conv.out_chs, (kh, kw), stride=conv.stride,
                   padding=conv.padding if isinstance(conv.padding, str) else
                   (conv.padding[0][0], conv.padding[1][0]),
                   dilation=conv.dilation, groups=conv.groups, bias=True, dtype=conv.dtype,
                   rngs=nnx.Rngs(0))
    if conv.padding != "SAME":
        fused.padding = conv.padding  # keep asymmetric explicit padding exactly
    fused.kernel[...] = conv.kernel[...] * t
    fused.bias[...] = bias
    return fused


def fuse(model: nnx.Module, *, inplace: bool = False) -> nnx.Module:
    """Re-parameterise RepVGG blocks and fold every declared conv+BatchNorm pair.

    Returns a model in eval mode whose outputs equal ``model``'s in eval mode (float32 rel err
    around 1e-7). The input model is left untouched unless ``inplace=True``.
    """
    if not inplace:
        model = nnx.clone(model)
    model.eval()
    for _, module in list(nnx.iter_modules(model)):
        if callable(getattr(module, "reparameterize", None)):
            module.reparameterize()
    for _, module in list(nnx.iter_modules(model)):
        for conv_attr, bn_attr in getattr(type(module), "fuse_pairs", ()):
            conv, bn = getattr(module, conv_attr, None), getattr(module, bn_attr, None)
            if isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d):
                setattr(module, conv_attr, fold_bn_into_conv(conv, bn))
                setattr(module, bn_attr, Identity())
    model.eval()
    return model
