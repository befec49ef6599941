"""Serialized StableHLO (``jax.export``): the model for any JAX backend, weights embedded."""

from __future__ import annotations

import os
from typing import Sequence

from ..layers.core import depthwise_impl
from .common import _default_resolution, _input_spec


def export_stablehlo(
    model,
    path: str,
    *,
    resolution: int | None = None,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    platforms: Sequence[str] | None = None,
) -> str:
    """Serialize ``model`` (eval mode, weights embedded) with ``jax.export``; returns ``path``.

    ``platforms``: lowering targets (default: the current backend), e.g. ``("cpu", "cuda")``.
    Load with ``load_stablehlo(path).call(x)``.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    resolution = _default_resolution(model, resolution)
    shape = _input_spec(model, resolution, batch_size, dynamic_batch)
    if dynamic_batch:
        shape = jax.export.symbolic_shape(f"b, {shape[1]}, {shape[2]}, {shape[3]}")
    model.eval()
    with depthwise_impl(model, "conv"):  # portable: one grouped conv, not the CPU's shifted form
        graphdef, state = nnx.split(model)
    fn = jax.jit(lambda x: nnx.merge(graphdef, state)(x))
    kwargs = {"platforms": tuple(platforms)} if platforms else {}
    exported = jax.export.export(fn, **kwargs)(jax.ShapeDtypeStruct(shape, jnp.float32))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(exported.serialize())
    return str(path)


def load_stablehlo(path: str):
    """Deserialize a file written by ``export_stablehlo``; call it with ``.call(x)``."""
    import jax

    with open(path, "rb") as f:
        return jax.export.deserialize(bytearray(f.read()))
