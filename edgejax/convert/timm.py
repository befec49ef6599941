"""timm state dict <-> edgejax model, by module path.

edgejax modules carry timm's module names as attribute names (``stages[0].blocks[1].conv_dw``), so
the mapping is mechanical: each leaf layer type knows how its timm tensors map onto its
parameters (conv OIHW -> HWIO, linear [out, in] -> [in, out], BatchNorm weight/bias/running_*),
and any other ``nnx.Param`` attribute (``gamma``, ``attention_biases``) maps one to one.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import jax.numpy as jnp
from flax import nnx

from ..layers import BatchNorm2d, Conv2d, GroupNorm1, LayerNorm, Linear

__all__ = ["timm_key_map", "from_timm", "to_timm", "load_state_dict", "StateDictMismatchError"]


class StateDictMismatchError(ValueError):
    """A state dict does not fit the model: lists every missing, unexpected, mis-shaped key."""


def _conv_to_flax(w):
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_timm(k):
    return np.transpose(k, (3, 2, 0, 1))


def _linear_to_flax(w):
    if w.ndim == 4:  # a 1x1 conv used as a dense layer
        w = w[:, :, 0, 0]
    return np.transpose(w)


def _ident(w):
    return w


# leaf type -> {timm tensor name: (edgejax attribute, to_flax, to_timm)}
_LEAVES: dict[type, dict[str, tuple[str, Callable, Callable]]] = {
    Conv2d: {"weight": ("kernel", _conv_to_flax, _conv_to_timm), "bias": ("bias", _ident, _ident)},
    Linear: {"weight": ("kernel", _linear_to_flax, np.transpose), "bias": ("bias", _ident, _ident)},
    BatchNorm2d: {
        "weight": ("scale", _ident, _ident),
        "bias": ("bias", _ident, _ident),
        "running_mean": ("mean", _ident, _ident),
        "running_var": ("var", _ident, _ident),
    },
    LayerNorm: {"weight": ("scale", _ident, _ident), "bias": ("bias", _ident, _ident)},
    GroupNorm1: {"weight": ("scale", _ident, _ident), "bias": ("bias", _ident, _ident)},
}


def _path_str(path) -> str:
    return ".".join(str(p) for p in path)


def timm_key_map(model: nnx.Module) -> dict[str, tuple[tuple, str, Callable, Callable]]:
    """``{timm key: (module path, attribute, to_flax, to_timm)}`` for every tensor of ``model``.

    A module may define ``timm_linear_from_conv = True`` (handled by ``Linear`` already) or a
    method ``timm_extra_keys()`` returning more entries for tensors it stores unusually.
    """
    out: dict[str, tuple] = {}
    for path, module in (
        nnx.iter_modules(model) if hasattr(nnx, "iter_modules") else model.iter_modules()
    ):
        prefix = _path_str(path)
        leaf = next((spec for t, spec in _LEAVES.items() if isinstance(module, t)), None)
        if leaf is not None:
            for tname, (attr, to_f, to_t) in leaf.items():
                if getattr(module, attr, None) is not None:
                    key = f"{prefix}.{tname}" if prefix else tname
                    out[key] = (tuple(path), attr, to_f, to_t)
            continue
        for attr, value in vars(module).items():
            if isinstance(value, nnx.Variable) and isinstance(value, (nnx.Param, nnx.BatchStat)):
                key = f"{prefix}.{attr}" if prefix else attr
                out[key] = (tuple(path), attr, _ident, _ident)
    return out


def _get_module(model, path):
    m = model
    for p in path:
        m = m[p] if isinstance(p, int) else getattr(m, p)
    return m


def _normalise_keys(model, state_dict: Mapping) -> dict:
    remap = getattr(model, "timm_remap", None)
    ignore = getattr(model, "timm_ignore", ("num_batches_tracked",))
    out = {}
    for k, v in state_dict.items():
        if any(k.endswith(s) for s in ignore):
            continue
        if remap is not None:
            k = remap(k)
            if k is None:
                continue
        out[k] = v
    return out


def load_state_dict(model: nnx.Module, state_dict: Mapping, *, strict: bool = True) -> nnx.Module:
    """Copy a timm state dict (name -> array) into ``model`` in place and return it.

    Strict (default): every missing, unexpected and mis-shaped key is listed in one
    ``StateDictMismatchError``. Non-strict: fills what fits and ignores the rest. A tensor of a
    non-float dtype where the model has a float one is an error either way.
    """
    sd = _normalise_keys(model, state_dict)
    kmap = timm_key_map(model)
    missing = sorted(k for k in kmap if k not in sd)
    unexpected = sorted(k for k in sd if k not in kmap)
    bad_shape, bad_dtype, updates = [], [], []
    for key, (path, attr, to_f, _) in kmap.items():
        if key not in sd:
            continue
        raw = np.asarray(sd[key])
        if raw.dtype.kind != "f":  # every mapped tensor is a float weight or statistic
            bad_dtype.append(f"{key}: {raw.dtype}, expected a float tensor")
            continue
        value = to_f(raw.astype(np.float32))
        var = getattr(_get_module(model, path), attr)
        if tuple(value.shape) != tuple(var.shape):
            bad_shape.append(
                f"{key}: checkpoint {tuple(np.asarray(sd[key]).shape)} -> "
                f"{tuple(value.shape)}, model expects {tuple(var.shape)}"
            )
            continue
        updates.append((var, value))
    if bad_dtype or (strict and (missing or unexpected or bad_shape)):
        lines = [f"state dict does not fit {type(model).__name__}:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", bad_shape),
            ("wrong dtype", bad_dtype),
        ):
            if items:
                lines.append(
                    f"  {len(items)} {title}: "
                    + "; ".join(items[:50])
                    + (" ..." if len(items) > 50 else "")
                )
        raise StateDictMismatchError("\n".join(lines))
    for var, value in updates:
        var[...] = jnp.asarray(value, dtype=var[...].dtype)
    return model


def _infer_num_classes(model_cls, sd: Mapping, head: str) -> int | None:
    for suffix in (".weight",):
        w = sd.get(head + suffix)
        if w is not None:
            return int(np.asarray(w).shape[0])
    return None


def from_timm(
    name: str,
    state_dict: Mapping,
    *,
    strict: bool = True,
    num_classes: int | None = None,
    dtype=None,
    **overrides,
) -> nnx.Module:
    """Build the edgejax model ``name`` and fill it from a timm ``state_dict``.

    ``num_classes`` defaults to the width of the state dict's classifier (so TinyViT's 21,841-class
    heads load as such); the model is returned in eval mode.
    """
    from ..registry import get_entry

    entry = get_entry(name)
    model = entry.builder(
        entry.cfg, num_classes=num_classes or 1000, rngs=nnx.Rngs(0), dtype=dtype, **overrides
    )
    if num_classes is None:
        found = _infer_num_classes(type(model), _normalise_keys(model, state_dict), model.timm_head)
        if found is not None and found != 1000:
            model = entry.builder(
                entry.cfg, num_classes=found, rngs=nnx.Rngs(0), dtype=dtype, **overrides
            )
        elif found is None and any(
            k.startswith(model.timm_head + ".") for k in timm_key_map(model)
        ):
            model = entry.builder(
                entry.cfg, num_classes=0, rngs=nnx.Rngs(0), dtype=dtype, **overrides
            )
    load_state_dict(model, state_dict, strict=strict)
    model.eval()
    return model


def to_timm(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's tensors as a timm state dict (numpy, float32; no ``num_batches_tracked``)."""
    out = {}
    for key, (path, attr, _, to_t) in timm_key_map(model).items():
        out[key] = np.ascontiguousarray(
            to_t(np.asarray(getattr(_get_module(model, path), attr)[...]))
        )
    return out
