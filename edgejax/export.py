"""Export edgejax models: ONNX (through jax2onnx) and serialized StableHLO (``jax.export``).

Command line (``python -m edgejax.export --help``)::

    python -m edgejax.export --model repvgg_a2 --pretrained repvgg_a2.safetensors \\
        --format onnx --out repvgg_a2.onnx --dynamic-batch --deploy [--winograd]
    python -m edgejax.export --model mobilevitv2_050 --checkpoint runs/mvit/best \\
        --format stablehlo --out mobilevitv2_050.stablehlo --batch 8

Python::

    from edgejax.export import export_onnx, export_stablehlo, load_stablehlo, run_onnx
    export_onnx(model, "m.onnx", resolution=224, dynamic_batch=True)
    logits = run_onnx("m.onnx", images_nhwc)                    # onnxruntime, CPU
    export_stablehlo(model, "m.stablehlo", resolution=224, batch_size=1)
    logits = load_stablehlo("m.stablehlo").call(images_nhwc)    # any JAX backend

Both formats take NHWC float32 images normalised with the model's mean/std (as the JAX model)
and return logits; the weights are embedded. ``--deploy`` exports the fused model
(``edgejax.deploy.fuse``): fewer, cheaper ops, the same outputs. ``--winograd`` (ONNX) writes
the wide stride-1 3x3 convs as Winograd F(4x4, 3x3) / F(2x2, 3x3) MatMuls, for CPU runtimes.
ONNX graphs of ConvNeXt and of TinyViT's one-window stages are traced in NCHW (1x1 convs instead
of MatMuls; same values) unless ``--channels-last``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np

from .layers.core import channels_first as _channels_first, depthwise_impl

__all__ = ["load_model", "export_onnx", "export_stablehlo", "load_stablehlo", "run_onnx",
           "onnx_session", "relative_error", "winograd_convs", "main"]

FORMATS = ("onnx", "stablehlo")
# Convs narrower than this stay direct: their Winograd transforms cost more than they save (on
# repvgg_a2 in onnxruntime, 2 cores: 96 channels at 56x56 slower, 192 at 28x28 faster).
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_TILES = (4, 2)  # F(4x4, 3x3) where the map is a multiple of 4, else F(2x2, 3x3)


def relative_error(a, b) -> float:
    """``max|a - b| / max|b|`` (``b`` the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _load_checkpoint(path: str, name: str | None):
    try:
        from .train.checkpoint import load_model as _load
    except ImportError:
        _load = None
    if _load is None:
        raise NotImplementedError(
            "--checkpoint needs edgejax.train.checkpoint.load_model(workdir_or_ckpt_dir, "
            "model_name=None) -> nnx.Module, which edgejax.train does not provide yet; use "
            "--pretrained FILE (timm safetensors) meanwhile")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint directory not found: {path}")
    return _load(path, model_name=name)


def load_model(name: str, *, checkpoint: str | None = None, pretrained: str | None = None,
               deploy: bool = False, dtype=None):
    """The model to export: from an orbax training checkpoint (``checkpoint``), from timm
    safetensors weights (``pretrained``; a file that does not fit the model raises the
    converter's ``StateDictMismatchError`` listing the bad keys), or randomly initialised; fused
    for deployment when ``deploy``. Returned in eval mode."""
    from .registry import create_model, get_entry
    entry = get_entry(name)  # unknown names fail here, with the closest names
    if checkpoint and pretrained:
        raise ValueError("give either --checkpoint or --pretrained, not both")
    if checkpoint:
        model = _load_checkpoint(checkpoint, entry.name)
    elif pretrained:
        model = create_model(entry.name, pretrained=pretrained, dtype=dtype)
    else:
        from .bench import build_model
        model = build_model(entry.name, dtype=dtype)
    if deploy:
        from .deploy import fuse
        model = fuse(model)
    model.eval()
    return model


def _input_spec(model, resolution: int, batch_size: int, dynamic_batch: bool):
    from .bench import validate_resolution
    if not dynamic_batch and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                              or batch_size < 1):
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    validate_resolution(model, resolution, batch_size=1)
    return ("B" if dynamic_batch else batch_size, resolution, resolution, model.in_chans)


def _default_resolution(model, resolution):
    if resolution is not None:
        return resolution
    raise ValueError("resolution is required (e.g. model_info(name)['input_size'][1])")


def export_onnx(model, path: str, *, resolution: int | None = None, batch_size: int = 1,
                dynamic_batch: bool = False, opset: int = 21, name: str = "edgejax",
                fuse_layer_norms: bool = True, winograd: bool = False,
                winograd_min_channels: int = WINOGRAD_MIN_CHANNELS,
                winograd_tiles: tuple[int, ...] = WINOGRAD_TILES, channels_first: bool = True) -> str:
    """Write ``model`` (eval mode) as an ONNX file through jax2onnx; returns ``path``.

    Input ``input`` [B, H, W, C] float32 NHWC (B symbolic with ``dynamic_batch``), output
    ``logits``. Weights are stored as initializers. LayerNorms become single
    ``LayerNormalization`` ops (``fuse_layer_norms``; opset >= 17). ``winograd``: stride-1 3x3
    convolutions with at least ``winograd_min_channels`` input and output channels are written
    as Winograd F(4x4, 3x3) / F(2x2, 3x3) MatMuls (``winograd_convs``, ``winograd_tiles``): 4x /
    2.25x fewer multiplies, for CPU runtimes whose convolutions are direct (onnxruntime's MLAS);
    leave it off for runtimes that pick their own conv algorithm (cuDNN, TensorRT). Check with
    ``run_onnx``. ``channels_first``: families that support it (ConvNeXt, TinyViT's one-window
    stages) are traced with their stages in NCHW (``edgejax.layers.channels_first``): the same
    values, and onnxruntime keeps every conv, bias and residual add of a stage in its blocked
    layout (in A/Bs on CPU: convnext_tiny 71.1 -> 63.3 ms, tiny_vit_21m_224 75.1 -> 71.6 ms).
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
    graphdef, state = nnx.split(model)
    state = jax.tree.map(lambda v: np.asarray(v) if isinstance(v, jax.Array) else v, state)

    def forward(x):
        return nnx.merge(graphdef, state)(x).astype(jnp.float32)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # one Conv op per depthwise conv, whatever the backend
    with depthwise_impl("conv"), _channels_first(channels_first):
        proto = to_onnx(forward, [shape], model_name=name, opset=opset, return_mode="proto",
                        input_names=["input"], output_names=["logits"])
    if fuse_layer_norms and opset >= 17:
        _fuse_layer_norms(proto)
    if winograd:
        winograd_convs(proto, min_channels=winograd_min_channels, tiles=winograd_tiles)
    import onnx
    onnx.save_model(proto, str(path))
    return str(path)


class _GraphIndex:
    """Lookups over an ONNX ModelProto's graph for the rewrites below, and ``replace``."""

    def __init__(self, model):
        import onnx
        from onnx import numpy_helper
        self.model, self.g = model, model.graph
        self._to_array = numpy_helper.to_array
        self.inits = {i.name: i for i in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.g.node:
            for i in dict.fromkeys(n.input):  # a node reading a value twice (x * x) counts once
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.g.output}
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        self.shapes = {  # static dims as ints, symbolic ones as None
            v.name: tuple(d.dim_value if d.HasField("dim_value") else None
                          for d in v.type.tensor_type.shape.dim)
            for v in (*self.g.input, *self.g.output, *inferred)
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}

    def const(self, name):
        return self._to_array(self.inits[name]) if name in self.inits else None

    def only(self, name, op):
        """The single consumer of ``name``, if it is an ``op`` node (and not a graph output)."""
        cs = self.consumers.get(name, [])
        return (cs[0] if len(cs) == 1 and cs[0].op_type == op and name not in self.outputs
                else None)

    @staticmethod
    def other(node, name):
        return node.input[1] if node.input[0] == name else node.input[0]

    @staticmethod
    def attr(node, key, default=None):
        from onnx import helper
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == key),
                    default)

    def replace(self, remove: set, insert: dict, new_inits: list) -> None:
        """Drop the nodes whose ``id`` is in ``remove``; put ``insert[id(n)]`` (a list of new
        nodes) where node ``n`` was; add ``new_inits``, drop initializers nothing reads any
        more, and check the model."""
        import onnx
        nodes = []
        for n in self.g.node:
            nodes.extend(insert.get(id(n), ()))
            if id(n) not in remove:
                nodes.append(n)
        del self.g.node[:]
        self.g.node.extend(nodes)
        self.g.initializer.extend(new_inits)
        used = {i for n in self.g.node for i in n.input}
        keep = [i for i in self.g.initializer if i.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)
        onnx.checker.check_model(self.model)


def _fuse_layer_norms(model) -> int:
    """Rewrite each decomposed last-axis LayerNorm in an ONNX graph as one ``LayerNormalization``.

    jax2onnx writes ``edgejax.layers.LayerNorm`` as ReduceMean -> Sub -> Mul(d, d) -> ReduceMean
    -> Add(eps) -> Sqrt -> Div(1, .) -> Mul(d, .) -> Mul(scale) -> Add(bias), nine passes over
    the tensor, which onnxruntime's own LayerNorm fusion does not recognise (it expects Pow). The
    single op is one pass with the same two-pass variance arithmetic. Returns how many were fused.
    """
    from onnx import helper, numpy_helper

    gi = _GraphIndex(model)
    consumers, const, only, other = gi.consumers, gi.const, gi.only, gi.other

    def last_axis(rm):
        axes = const(rm.input[1]) if len(rm.input) > 1 else None
        keep = gi.attr(rm, "keepdims", 1)
        if axes is None or axes.size != 1 or keep != 1:
            return False
        return int(axes[0]) == -1 or int(axes[0]) == len(gi.shapes.get(rm.input[0], ())) - 1

    remove, insert, new_inits = set(), {}, []
    for rm1 in gi.g.node:
        if rm1.op_type != "ReduceMean" or not last_axis(rm1):
            continue
        x = rm1.input[0]
        sub = only(rm1.output[0], "Sub")
        if sub is None or sub.input[0] != x:
            continue
        d = sub.output[0]
        d_uses = consumers.get(d, [])
        sq = next((c for c in d_uses if c.op_type == "Mul" and c.input[0] == c.input[1] == d), None)
        if sq is None or len(d_uses) != 2:
            continue
        rm2 = only(sq.output[0], "ReduceMean")
        add_eps = rm2 and last_axis(rm2) and only(rm2.output[0], "Add")
        eps = add_eps and const(other(add_eps, rm2.output[0]))
        sqrt = add_eps and only(add_eps.output[0], "Sqrt")
        div = sqrt and only(sqrt.output[0], "Div")
        one = div and div.input[1] == sqrt.output[0] and const(div.input[0])
        norm = div and only(div.output[0], "Mul")
        if (eps is None or eps is False or getattr(eps, "size", 0) != 1 or one is None
                or one is False or getattr(one, "size", 0) != 1 or float(one) != 1.0
                or norm is None or other(norm, div.output[0]) != d or norm not in d_uses):
            continue
        mul_s = only(norm.output[0], "Mul")
        scale = mul_s and const(other(mul_s, norm.output[0]))
        add_b = mul_s and only(mul_s.output[0], "Add")
        bias = add_b and const(other(add_b, mul_s.output[0]))
        if scale is None or scale is False or bias is None or bias is False:
            continue
        c = scale.shape[-1] if scale.ndim else 0
        if c == 0 or scale.size != c or bias.size != c:
            continue
        k = len(insert)
        s_name, b_name = f"ln_fused_scale_{k}", f"ln_fused_bias_{k}"
        new_inits += [numpy_helper.from_array(scale.reshape(c).astype(np.float32), s_name),
                      numpy_helper.from_array(bias.reshape(c).astype(np.float32), b_name)]
        # where the last replaced node (the final Add) was: the order stays topological
        insert[id(add_b)] = [helper.make_node("LayerNormalization", [x, s_name, b_name],
                                              [add_b.output[0]], axis=-1, epsilon=float(eps),
                                              name=f"layer_norm_fused_{k}")]
        remove.update(id(n) for n in (rm1, sub, sq, rm2, add_eps, sqrt, div, norm, mul_s, add_b))
    if insert:
        gi.replace(remove, insert, new_inits)
    return len(insert)


# Winograd F(m x m, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A for each
# (m + 2)^2 input tile d (stride m) and m x m output tile: (m + 2)^2 multiplies per tile and
# channel pair instead of 9 m^2 (F(2x2): 16 vs 36; F(4x4): 36 vs 144).
_WINOGRAD = {  # m: (B^T, G, A^T)
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], np.float64)),
}


def _winograd_tile_matrix(n: int, m: int = 2) -> np.ndarray:
    """[(m + 2) * n/m, n]: row (a, t) = sum_i B^T[a, i] * x[m t + i - 1], the input transform
    along one spatial axis of length n (a multiple of m) with the conv's zero padding of 1
    folded in."""
    bt = _WINOGRAD[m][0]
    a_n, t = m + 2, n // m
    mat = np.zeros((a_n, t, n), np.float32)
    for a in range(a_n):
        for ti in range(t):
            for i in range(a_n):
                if 0 <= m * ti + i - 1 < n:
                    mat[a, ti, m * ti + i - 1] = bt[a, i]
    return mat.reshape(a_n * t, n)


def winograd_convs(model, *, min_channels: int = WINOGRAD_MIN_CHANNELS,
                   tiles: tuple[int, ...] = WINOGRAD_TILES) -> int:
    """Rewrite the stride-1, pad-1, 3x3, ungrouped convolutions of a jax2onnx graph (NHWC
    Transpose -> Conv -> Transpose back, static height and width, at least ``min_channels`` in
    and out) as Winograd F(m x m, 3x3), in place; returns how many.

    ``m`` is the first of ``tiles`` (output tile sizes, 2 and/or 4) that divides the map's
    height and width; a map none divides stays a direct conv. F(2x2) does 16 multiplies per
    tile and channel pair instead of 36, F(4x4) 36 instead of 144. Per conv, with T = batch *
    H/m * W/m tiles and a = m + 2: the input transform as two MatMuls with constant
    [a H/m, H] / [a W/m, W] matrices (rows, then columns; the zero padding folded in), a
    Transpose that keeps channels innermost, one batched MatMul [a^2, T, C] @ [a^2, C, C_out]
    with the transformed weights G g G^T, the output transform as one [m^2, a^2] MatMul, and a
    Transpose back to NHWC. Exact in real arithmetic; in float32 the outputs differ from the
    direct conv by a few ulps (relative ~3e-7 on repvgg_a2's logits, F(4x4) and F(2x2) alike).
    On this project's 2-core CPU, repvgg_a2 (F(4x4) for stage 2 at 28x28, F(2x2) for stage 3 at
    14x14): onnxruntime p50 58.0 ms direct, 48.1 with F(2x2) only, 45.2 with both.
    """
    from onnx import helper, numpy_helper

    gi = _GraphIndex(model)
    remove, insert, new_inits = set(), {}, []
    if not tiles or any(m not in _WINOGRAD for m in tiles):
        raise ValueError(f"tiles must be output tile sizes among {sorted(_WINOGRAD)}, got {tiles}")
    k = 0
    for conv in gi.g.node:
        if (conv.op_type != "Conv" or gi.attr(conv, "group", 1) != 1
                or list(gi.attr(conv, "strides", [1, 1])) != [1, 1]
                or list(gi.attr(conv, "dilations", [1, 1])) != [1, 1]
                or list(gi.attr(conv, "pads", [0, 0, 0, 0])) != [1, 1, 1, 1]
                or gi.attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            continue
        w = gi.const(conv.input[1])
        w_t = gi.producer.get(conv.input[1])
        if w is None and w_t is not None and w_t.op_type == "Transpose":
            src = gi.const(w_t.input[0])  # jax2onnx: Transpose(HWIO kernel) -> OIHW
            w = None if src is None else src.transpose(gi.attr(w_t, "perm"))
        bias = gi.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if w is None or w.ndim != 4 or w.shape[2:] != (3, 3) or (
                len(conv.input) > 2 and conv.input[2] and bias is None):
            continue
        c_out, c_in = w.shape[:2]
        t_in = gi.producer.get(conv.input[0])
        t_out = gi.only(conv.output[0], "Transpose")
        if (min(c_in, c_out) < min_channels or t_in is None or t_in.op_type != "Transpose"
                or list(gi.attr(t_in, "perm", [])) != [0, 3, 1, 2] or t_out is None
                or list(gi.attr(t_out, "perm", [])) != [0, 2, 3, 1]):
            continue
        x = t_in.input[0]
        shape = gi.shapes.get(x)
        if shape is None or len(shape) != 4 or None in shape[1:] or shape[3] != c_in:
            continue
        h, wd = shape[1], shape[2]
        m = next((m for m in tiles if h % m == 0 and wd % m == 0), None)
        if m is None:
            continue
        a_n = m + 2
        th, tw = h // m, wd // m
        _, g_mat, at = _WINOGRAD[m]
        aa = np.kron(at, at).astype(np.float32)  # [m * m (u, v), a_n^2 (alpha, beta)]
        p = f"winograd_{k}_"
        k += 1

        def const(suffix, arr):
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), p + suffix))
            return p + suffix

        def node(op, inputs, out, **kw):
            return helper.make_node(op, inputs, [out if out == t_out.output[0] else p + out],
                                    name=p + out, **kw)

        def dims(suffix, *d):
            return const(suffix, np.array(d, np.int64))

        # U[alpha * a_n + beta, c, o] = (G g[o, c] G^T)[alpha, beta]
        u = np.einsum("ai,ocij,bj->abco", g_mat, w.astype(np.float64), g_mat)
        y = t_out.output[0] if bias is None else "y"
        pos = a_n * a_n
        insert[id(t_out)] = [
            node("Reshape", [x, dims("s0", -1, h, wd * c_in)], "x3"),
            node("MatMul", [const("rows", _winograd_tile_matrix(h, m)), p + "x3"], "r"),
            node("Reshape", [p + "r", dims("s1", -1, wd, c_in)], "r3"),
            node("MatMul", [const("cols", _winograd_tile_matrix(wd, m)), p + "r3"], "d"),
            node("Reshape", [p + "d", dims("s2", -1, a_n, th, a_n, tw, c_in)], "d6"),
            node("Transpose", [p + "d6"], "dt", perm=[1, 3, 0, 2, 4, 5]),  # [a, a, N, th, tw, C]
            node("Reshape", [p + "dt", dims("s3", pos, -1, c_in)], "v"),
            node("MatMul", [p + "v", const("u", u.reshape(pos, c_in, c_out).astype(np.float32))],
                 "m"),                                                    # [a^2, T, C_out]
            node("Reshape", [p + "m", dims("s4", pos, -1)], "m2"),
            node("MatMul", [const("at", aa), p + "m2"], "o"),             # [m^2, T * C_out]
            node("Reshape", [p + "o", dims("s5", m, m, -1, th, tw, c_out)], "o6"),
            node("Transpose", [p + "o6"], "ot", perm=[2, 3, 0, 4, 1, 5]),
            node("Reshape", [p + "ot", dims("s6", -1, h, wd, c_out)], y),
        ]
        if bias is not None:
            insert[id(t_out)].append(node("Add", [p + "y", const("bias", bias.reshape(c_out))],
                                          t_out.output[0]))
        remove.update((id(conv), id(t_out)))
        if len(gi.consumers.get(t_in.output[0], [])) == 1 and t_in.output[0] not in gi.outputs:
            remove.add(id(t_in))
    if k:
        gi.replace(remove, insert, new_inits)
    return k


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
    sess = (onnx_session(path_or_session) if isinstance(path_or_session, (str, os.PathLike))
            else path_or_session)
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.asarray(x, np.float32)})[0]


def export_stablehlo(model, path: str, *, resolution: int | None = None, batch_size: int = 1,
                     dynamic_batch: bool = False, platforms: Sequence[str] | None = None) -> str:
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
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda x: nnx.merge(graphdef, state)(x))
    kwargs = {"platforms": tuple(platforms)} if platforms else {}
    with depthwise_impl("conv"):  # portable: one grouped conv, not the CPU-only shifted form
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


# ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgejax.export",
                                description="Export an edgejax model to ONNX or StableHLO.")
    p.add_argument("--model", required=True, help="registered model name, e.g. repvgg_a2")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="orbax checkpoint directory written by edgejax.train")
    src.add_argument("--pretrained", help="timm .safetensors weights file")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output file")
    b = p.add_mutually_exclusive_group()
    b.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    b.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension")
    p.add_argument("--resolution", type=int, default=None,
                   help="input height = width (default: the model's default input size)")
    p.add_argument("--deploy", action="store_true", help="fuse (RepVGG reparam + BN folding)")
    p.add_argument("--winograd", action="store_true",
                   help="ONNX: write stride-1 3x3 convs with >= %d channels as Winograd "
                        "F(4x4,3x3) (maps a multiple of 4) or F(2x2,3x3) (even maps) MatMuls "
                        "(faster in onnxruntime on CPU; not for GPU runtimes)"
                        % WINOGRAD_MIN_CHANNELS)
    p.add_argument("--channels-last", action="store_true",
                   help="ONNX: trace every stage in the models' NHWC layout (by default ConvNeXt "
                        "and TinyViT's one-window stages are traced in NCHW, which onnxruntime "
                        "runs faster; same values)")
    p.add_argument("--opset", type=int, default=21, help="ONNX opset")
    p.add_argument("--no-verify", action="store_true",
                   help="skip running the exported file against JAX on a random batch")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from .registry import model_info
        from .bench import validate_resolution, _abstract_model
        info = model_info(args.model)
        name = info["name"]
        resolution = args.resolution or info["input_size"][1]
        for flag in ("winograd", "channels_last"):
            if getattr(args, flag) and args.format != "onnx":
                raise ValueError(f"--{flag.replace('_', '-')} applies to --format onnx only")
        if not args.dynamic_batch and args.batch < 1:
            raise ValueError(f"--batch must be a positive integer, got {args.batch}")
        validate_resolution(_abstract_model(name), resolution, name=name)  # before any compile
        model = load_model(name, checkpoint=args.checkpoint, pretrained=args.pretrained,
                           deploy=args.deploy)
        kw = dict(resolution=resolution, batch_size=args.batch, dynamic_batch=args.dynamic_batch)
        if args.format == "onnx":
            export_onnx(model, args.out, opset=args.opset, name=name, winograd=args.winograd,
                        channels_first=not args.channels_last, **kw)
        else:
            export_stablehlo(model, args.out, **kw)
    except (ValueError, TypeError, FileNotFoundError, NotImplementedError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.out) / 2**20
    print(f"wrote {args.out} ({args.format}, {size:.1f} MiB, input "
          f"[{'B' if args.dynamic_batch else args.batch}, {resolution}, {resolution}, "
          f"{model.in_chans}] float32 NHWC)")
    if not args.no_verify:
        import jax
        from flax import nnx
        b = 2 if args.dynamic_batch else args.batch
        x = np.random.default_rng(0).standard_normal((b, resolution, resolution, model.in_chans),
                                                     dtype=np.float32)
        graphdef, state = nnx.split(model)
        ref = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x))
        got = run_onnx(args.out, x) if args.format == "onnx" else \
            np.asarray(load_stablehlo(args.out).call(x))
        err = relative_error(got, ref)
        print(f"verified against JAX on a random batch of {b}: relative error {err:.2e}")
        if err > 1e-4:
            print("error: relative error above 1e-4", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
