"""Model registry: ``register_model``, ``create_model``, ``list_models``, ``model_info``.

A family file declares its variants as data and registers one builder per timm name::

    register_model("repvgg_a2", build_repvgg, cfg=RepVGGConfig(...), info=dict(...))

``create_model`` resolves aliases (the study's names), seeds ``nnx.Rngs`` and forwards overrides.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from flax import nnx

from .layers.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "register_model",
    "register_alias",
    "create_model",
    "list_models",
    "model_info",
    "ModelEntry",
    "register_variants",
    "get_entry",
    "count_params",
]

# timm's default pretrained-cfg values; each registration overrides what differs.
_DEFAULT_INFO = dict(
    input_size=(3, 224, 224),
    test_input_size=None,
    crop_pct=0.875,
    interpolation="bicubic",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    num_classes=1000,
    hf_hub_id=None,
    top1=None,
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., nnx.Module]
    cfg: Any
    info: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str,
    builder: Callable[..., nnx.Module],
    *,
    family: str,
    cfg: Any = None,
    info: dict | None = None,
) -> None:
    """Register ``name``. ``builder(cfg, *, num_classes, rngs, dtype, **overrides)`` builds it."""
    if name in _REGISTRY or name in _ALIASES:
        raise ValueError(f"model {name!r} is already registered")
    merged = dict(_DEFAULT_INFO)
    merged.update(info or {})
    if merged["test_input_size"] is None:
        merged["test_input_size"] = merged["input_size"]
    _REGISTRY[name] = ModelEntry(name, family, builder, cfg, merged)


def register_variants(
    family: str,
    variants: dict[str, tuple[Any, dict]],
    builder: Callable[..., nnx.Module],
    *,
    defaults: dict | None = None,
) -> None:
    """Register a family's variant table, the one shape every family uses: ``{name: (config,
    info)}``, ``info`` what differs from ``defaults`` (which differ from timm's defaults).
    ``hf_tag`` in either is timm's default pretrained tag: ``hf_hub_id`` becomes
    ``timm/<name>.<hf_tag>``."""
    for name, (cfg, info) in variants.items():
        merged = {**(defaults or {}), **info}
        tag = merged.pop("hf_tag", None)
        if tag is not None:
            merged["hf_hub_id"] = f"timm/{name}.{tag}"
        register_model(name, builder, family=family, cfg=cfg, info=merged)


def register_alias(alias: str, target: str) -> None:
    """Register another name for ``target`` (e.g. the study's ``mobilevitv2_xs``)."""
    if alias in _REGISTRY or alias in _ALIASES:
        raise ValueError(f"name {alias!r} is already registered")
    _ALIASES[alias] = target


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing registers every family)


def _unknown(name: str) -> ValueError:
    names = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Closest registered names: {', '.join(close)}." if close else ""
    return ValueError(
        f"Unknown model {name!r}.{hint} See edgejax.list_models() for all {len(_REGISTRY)} models."
    )


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name`` (aliases resolved); ``ValueError`` with close matches."""
    _ensure_loaded()
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name]


def list_models(pattern: str = "*", *, include_aliases: bool = False) -> list[str]:
    """Sorted registered names matching the fnmatch ``pattern`` (e.g. ``"repvgg_*"``)."""
    _ensure_loaded()
    names = list(_REGISTRY) + (list(_ALIASES) if include_aliases else [])
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def count_params(model: nnx.Module) -> int:
    """Trainable parameter count (``nnx.Param`` leaves; BatchNorm statistics excluded)."""
    import jax

    return int(sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))))


def model_info(name: str) -> dict:
    """timm's pretrained-cfg values for ``name`` plus ``num_params`` (1000-class head) and the
    family. Keys: input_size (C, H, W), test_input_size, crop_pct, interpolation, mean, std,
    num_params, family, name."""
    entry = get_entry(name)
    info = dict(entry.info)
    if "num_params" not in info:  # counted on an abstract model: shapes only, nothing allocated
        model = nnx.eval_shape(
            lambda: entry.builder(entry.cfg, num_classes=1000, rngs=nnx.Rngs(0), dtype=None)
        )
        info["num_params"] = count_params(model)
        entry.info["num_params"] = info["num_params"]
    info.update(name=entry.name, family=entry.family)
    return info


def _as_rngs(rngs) -> nnx.Rngs:
    if rngs is None:
        return nnx.Rngs(params=0, dropout=1)
    if isinstance(rngs, nnx.Rngs):
        return rngs
    if isinstance(rngs, int):
        return nnx.Rngs(params=rngs, dropout=rngs + 1)
    raise TypeError(f"rngs must be an int seed or nnx.Rngs, got {type(rngs).__name__}")


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    pretrained=None,
    rngs=None,
    dtype=None,
    **overrides,
) -> nnx.Module:
    """Build a registered model.

    Args:
      name: a timm name (``repvgg_a2``) or an alias (``mobilevitv2_xs``).
      num_classes: classifier width; 0 removes the classifier (features out). Default: the
        weights file's head with ``pretrained``, else 1000. A width that differs from the
        file's loads only its backbone (fine-tuning; one line on the ``edgejax`` logger).
      pretrained: ``None``/``False``; a path to a timm ``.safetensors`` file; or ``True`` to fetch
        the timm weights of this name from the Hugging Face Hub (cached).
      rngs: int seed or ``nnx.Rngs`` (streams ``params`` and ``dropout``).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
      **overrides: family options such as ``drop_rate``, ``drop_path_rate``, ``in_chans``.

    Returns the model in eval mode (call ``model.train()`` for training). It takes NHWC float
    images normalised with ``model_info(name)['mean'/'std']`` and returns logits ``[B, classes]``.
    """
    entry = get_entry(name)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0
    ):
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    if pretrained:
        from .convert import load_pretrained

        return load_pretrained(
            entry.name, pretrained, num_classes=num_classes, dtype=dtype, rngs=rngs, **overrides
        )
    num_classes = 1000 if num_classes is None else num_classes
    try:
        model = entry.builder(
            entry.cfg, num_classes=num_classes, rngs=_as_rngs(rngs), dtype=dtype, **overrides
        )
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"{entry.name}: {e}") from None
        raise
    model.eval()
    return model
