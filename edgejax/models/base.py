"""The base class every edgejax classifier derives from."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

__all__ = ["Classifier"]


class Classifier(nnx.Module):
    """Common interface: ``model(x)`` with ``x`` NHWC float ``[B, H, W, in_chans]`` -> logits.

    Subclasses implement ``forward_features(x) -> NHWC map`` and ``forward_head(feats) -> logits``
    and set ``in_chans``, ``num_classes``, ``num_features``. Conversion hooks (class attributes):
    ``timm_head``: the timm module path of the classifier (used to infer ``num_classes`` from a
    state dict); ``timm_ignore``: key suffixes of a timm state dict that carry no parameters.
    """

    timm_head: str = "head.fc"
    timm_ignore: tuple[str, ...] = ("num_batches_tracked",)
    # Height/width must be a multiple of this (the network's total stride where it matters).
    size_divisor: int = 1
    min_size: int = 32

    def check_input(self, x) -> None:
        """Clear errors for inputs that would otherwise fail deep inside XLA."""
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects an NHWC batch [B, H, W, {self.in_chans}],"
                f" got shape {shape}"
            )
        if shape[-1] != self.in_chans:
            hint = (
                " (this looks like NCHW: transpose to NHWC with x.transpose(0, 2, 3, 1))"
                if shape[1] == self.in_chans
                else ""
            )
            raise ValueError(
                f"{type(self).__name__} expects {self.in_chans} input channels in the "
                f"last axis (NHWC), got shape {tuple(shape)}{hint}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"{type(self).__name__} expects a float input normalised with the "
                f"model's mean/std, got dtype {x.dtype} (convert uint8 images with "
                f"edgejax.data normalisation first)"
            )
        h, w = shape[1], shape[2]
        if h < self.min_size or w < self.min_size:
            raise ValueError(
                f"{type(self).__name__}: input {h}x{w} is smaller than the minimum "
                f"{self.min_size}x{self.min_size}"
            )
        if self.size_divisor > 1 and (h % self.size_divisor or w % self.size_divisor):
            raise ValueError(
                f"{type(self).__name__}: input {h}x{w} must be a multiple of {self.size_divisor}"
            )

    def forward_features(self, x):
        raise NotImplementedError

    def forward_head(self, x, pre_logits: bool = False):
        raise NotImplementedError

    def __call__(self, x):
        self.check_input(x)
        return self.forward_head(self.forward_features(x))
