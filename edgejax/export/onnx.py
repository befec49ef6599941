"""ONNX export through jax2onnx, and onnxruntime sessions to run the files."""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..layers.core import depthwise_impl
from .common import _default_resolution, _input_spec
from .graph import WINOGRAD_MIN_CHANNELS, WINOGRAD_TILES, _fuse_layer_norms, winograd_convs
from .layout import nchw_layout


def export_onnx(
    model,
    path: str,
    *,
    resolution: int | None = None,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    opset: int = 21,
    name: str = "edgejax",
    fuse_layer_norms: bool = True,
    winograd: bool = False,
    winograd_min_channels: int = WINOGRAD_MIN_CHANNELS,
    winograd_tiles: tuple[int, ...] = WINOGRAD_TILES,
    channels_first: bool = True,
) -> str:
    """Write ``model`` (eval mode) as an ONNX file through jax2onnx; returns ``path``.

    Input ``input`` [B, H, W, C] float32 NHWC (B symbolic with ``dynamic_batch``), output
    ``logits``. Weights are stored as initializers. LayerNorms become single
    ``LayerNormalization`` ops (``fuse_layer_norms``; opset >= 17). ``winograd``: stride-1 3x3
    convolutions with at least ``winograd_min_channels`` input and output channels are written
    as Winograd F(4x4, 3x3) / F(2x2, 3x3) MatMuls (``winograd_convs``, ``winograd_tiles``): 4x /
    2.25x fewer multiplies, for CPU runtimes whose convolutions are direct (onnxruntime's MLAS);
    leave it off for runtimes that pick their own conv algorithm (cuDNN, TensorRT). Check with
    ``run_onnx``. ``channels_first``: the graph goes through ``edgejax.export.layout``: dense
    layers on maps become 1x1 convs and the maps stay NCHW from conv to conv (the same values;
    onnxruntime then fuses biases, activations and residual adds into its blocked-layout convs).
    Off, the graph is as jax2onnx writes it: NHWC, a Transpose before and after every conv.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    try:
        from jax2onnx import to_onnx
    except ImportError as e:
        raise ImportError("ONNX export needs jax2onnx: pip install 'edgejax[export]'") from e
    resolution = _default_resolution(model, resolution)
    shape = _input_spec(model, resolution, batch_size, dynamic_batch)
    model.eval()
    # one Conv op per depthwise conv whatever the backend, and attention heads laid out along
    # the channels (TinyViT), which the layout pass keeps between NCHW convs
    with depthwise_impl(model, "conv"), _heads_along_channels(model):
        graphdef, state = nnx.split(model)
    state = jax.tree.map(lambda v: np.asarray(v) if isinstance(v, jax.Array) else v, state)

    def forward(x):
        return nnx.merge(graphdef, state)(x).astype(jnp.float32)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    proto = to_onnx(
        forward,
        [shape],
        model_name=name,
        opset=opset,
        return_mode="proto",
        input_names=["input"],
        output_names=["logits"],
    )
    if fuse_layer_norms and opset >= 17:
        _fuse_layer_norms(proto)
    if winograd:  # before the layout pass: it rewrites the NHWC Transpose -> Conv -> Transpose
        winograd_convs(proto, min_channels=winograd_min_channels, tiles=winograd_tiles)
    if channels_first:
        nchw_layout(proto)
    import onnx

    onnx.save_model(proto, str(path))
    return str(path)


@contextlib.contextmanager
def _heads_along_channels(model):
    """Set ``heads_along_channels`` on every module that has it, for the ``with`` block."""
    from flax import nnx

    mods = [m for _, m in nnx.iter_graph(model) if hasattr(m, "heads_along_channels")]
    old = [m.heads_along_channels for m in mods]
    try:
        for m in mods:
            m.heads_along_channels = True
        yield
    finally:
        for m, v in zip(mods, old):
            m.heads_along_channels = v


def onnx_session(path: str, *, threads: int | None = None):
    """An onnxruntime CPU ``InferenceSession`` for ``path`` (all graph optimisations on)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(path_or_session, x) -> np.ndarray:
    """Run an exported ONNX model on ``x`` (NHWC float32) in onnxruntime; returns the logits."""
    sess = (
        onnx_session(path_or_session)
        if isinstance(path_or_session, (str, os.PathLike))
        else path_or_session
    )
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.asarray(x, np.float32)})[0]
