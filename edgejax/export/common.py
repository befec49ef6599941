"""What every export format shares: the model to export (a checkpoint, timm weights or random
weights, fused when deploying), the input spec, and the error measure used to verify a file."""

from __future__ import annotations

import os

import numpy as np


def relative_error(a, b) -> float:
    """``max|a - b| / max|b|`` (``b`` the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _load_checkpoint(path: str, name: str | None):
    try:
        from ..train.checkpoint import load_model as _load
    except ImportError:
        _load = None
    if _load is None:
        raise NotImplementedError(
            "--checkpoint needs edgejax.train.checkpoint.load_model(workdir_or_ckpt_dir, "
            "model_name=None) -> nnx.Module, which edgejax.train does not provide yet; use "
            "--pretrained FILE (timm safetensors) meanwhile"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint directory not found: {path}")
    return _load(path, model_name=name)


def load_model(
    name: str,
    *,
    checkpoint: str | None = None,
    pretrained: str | None = None,
    deploy: bool = False,
    dtype=None,
):
    """The model to export: from an orbax training checkpoint (``checkpoint``), from timm
    safetensors weights (``pretrained``; a file that does not fit the model raises the
    converter's ``StateDictMismatchError`` listing the bad keys), or randomly initialised; fused
    for deployment when ``deploy``. Returned in eval mode."""
    from ..registry import create_model, get_entry

    entry = get_entry(name)  # unknown names fail here, with the closest names
    if checkpoint and pretrained:
        raise ValueError("give either --checkpoint or --pretrained, not both")
    if checkpoint:
        model = _load_checkpoint(checkpoint, entry.name)
    elif pretrained:
        model = create_model(entry.name, pretrained=pretrained, dtype=dtype)
    else:
        from ..bench import build_model

        model = build_model(entry.name, dtype=dtype)
    if deploy:
        from ..deploy import fuse

        model = fuse(model)
    model.eval()
    return model


def _input_spec(model, resolution: int, batch_size: int, dynamic_batch: bool):
    from ..bench import validate_resolution

    if not dynamic_batch and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    validate_resolution(model, resolution, batch_size=1)
    return ("B" if dynamic_batch else batch_size, resolution, resolution, model.in_chans)


def _default_resolution(model, resolution):
    if resolution is not None:
        return resolution
    raise ValueError("resolution is required (e.g. model_info(name)['input_size'][1])")
