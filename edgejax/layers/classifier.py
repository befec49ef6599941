"""The classifier head most families share (timm ``layers/classifier.py``)."""

from __future__ import annotations

from typing import Callable

from flax import nnx

from .blocks import global_avg_pool
from .core import Dropout, Linear


class ClassifierHead(nnx.Module):
    """timm ``ClassifierHead`` (and ``NormMlpClassifierHead`` without its hidden layer):
    global average pool -> ``norm`` on the pooled vector, when given -> dropout -> ``fc``.
    ``[B, H, W, C] -> [B, num_classes]``; with ``pre_logits`` or ``num_classes=0`` (``fc`` None),
    the ``[B, C]`` features. Parameter names follow timm: ``head.norm``, ``head.fc``.

    ``kernel_init``: the family's classifier init (default: ``Linear``'s, torch's nn.Linear)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        drop_rate: float = 0.0,
        *,
        norm: nnx.Module | None = None,
        kernel_init: Callable | None = None,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        self.norm = norm
        self.num_features = in_features
        self.drop = Dropout(drop_rate, rngs=rngs) if drop_rate > 0 else None
        init = {} if kernel_init is None else {"kernel_init": kernel_init}
        self.fc = (
            Linear(in_features, num_classes, dtype=dtype, rngs=rngs, **init)
            if num_classes > 0
            else None
        )

    def __call__(self, x, pre_logits: bool = False):
        x = global_avg_pool(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.drop is not None:
            x = self.drop(x)
        if pre_logits or self.fc is None:
            return x
        return self.fc(x)
