"""Rewrites of a jax2onnx graph, in place: decomposed LayerNorms become one
``LayerNormalization``, and wide stride-1 3x3 convolutions can become Winograd MatMuls."""

from __future__ import annotations

import numpy as np

# Convs narrower than this stay direct: their Winograd transforms cost more than they save (on
# repvgg_a2 in onnxruntime, 2 cores: 96 channels at 56x56 slower, 192 at 28x28 faster).
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_TILES = (4, 2)  # F(4x4, 3x3) where the map is a multiple of 4, else F(2x2, 3x3)


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
            v.name: tuple(
                d.dim_value if d.HasField("dim_value") else None
                for d in v.type.tensor_type.shape.dim
            )
            for v in (*self.g.input, *self.g.output, *inferred)
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
        }

    def const(self, name):
        return self._to_array(self.inits[name]) if name in self.inits else None

    def only(self, name, op):
        """The single consumer of ``name``, if it is an ``op`` node (and not a graph output)."""
        cs = self.consumers.get(name, [])
        return cs[0] if len(cs) == 1 and cs[0].op_type == op and name not in self.outputs else None

    @staticmethod
    def other(node, name):
        return node.input[1] if node.input[0] == name else node.input[0]

    @staticmethod
    def attr(node, key, default=None):
        from onnx import helper

        return next(
            (helper.get_attribute_value(a) for a in node.attribute if a.name == key), default
        )

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
        if (
            eps is None
            or eps is False
            or getattr(eps, "size", 0) != 1
            or one is None
            or one is False
            or getattr(one, "size", 0) != 1
            or float(one) != 1.0
            or norm is None
            or other(norm, div.output[0]) != d
            or norm not in d_uses
        ):
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
        new_inits += [
            numpy_helper.from_array(scale.reshape(c).astype(np.float32), s_name),
            numpy_helper.from_array(bias.reshape(c).astype(np.float32), b_name),
        ]
        # where the last replaced node (the final Add) was: the order stays topological
        insert[id(add_b)] = [
            helper.make_node(
                "LayerNormalization",
                [x, s_name, b_name],
                [add_b.output[0]],
                axis=-1,
                epsilon=float(eps),
                name=f"layer_norm_fused_{k}",
            )
        ]
        remove.update(id(n) for n in (rm1, sub, sq, rm2, add_eps, sqrt, div, norm, mul_s, add_b))
    if insert:
        gi.replace(remove, insert, new_inits)
    return len(insert)


# Winograd F(m x m, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A for each
# (m + 2)^2 input tile d (stride m) and m x m output tile: (m + 2)^2 multiplies per tile and
# channel pair instead of 9 m^2 (F(2x2): 16 vs 36; F(4x4): 36 vs 144).
_WINOGRAD = {  # m: (B^T, G, A^T)
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    4: (
        np.array(
            [
                [4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1],
            ],
            np.float64,
        ),
        np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ],
            np.float64,
        ),
        np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
            np.float64,
        ),
    ),
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


def winograd_convs(
    model, *, min_channels: int = WINOGRAD_MIN_CHANNELS, tiles: tuple[int, ...] = WINOGRAD_TILES
) -> int:
    """Rewrite the stride-1, pad-1, 3x3, ungrouped convolutions of a jax2onnx graph (NHWC
    Transpose -> Conv -> Transpose back, static height and width, at least ``min_channels`` in
    and out) as Winograd F(m x m, 3x3), in place; returns how many. The graph as jax2onnx
    writes it: ``export_onnx(..., channels_first=False)``, or ``winograd=True``, which runs this
    before the layout pass.

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
        if (
            conv.op_type != "Conv"
            or gi.attr(conv, "group", 1) != 1
            or list(gi.attr(conv, "strides", [1, 1])) != [1, 1]
            or list(gi.attr(conv, "dilations", [1, 1])) != [1, 1]
            or list(gi.attr(conv, "pads", [0, 0, 0, 0])) != [1, 1, 1, 1]
            or gi.attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        ):
            continue
        w = gi.const(conv.input[1])
        w_t = gi.producer.get(conv.input[1])
        if w is None and w_t is not None and w_t.op_type == "Transpose":
            src = gi.const(w_t.input[0])  # jax2onnx: Transpose(HWIO kernel) -> OIHW
            w = None if src is None else src.transpose(gi.attr(w_t, "perm"))
        bias = gi.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if (
            w is None
            or w.ndim != 4
            or w.shape[2:] != (3, 3)
            or (len(conv.input) > 2 and conv.input[2] and bias is None)
        ):
            continue
        c_out, c_in = w.shape[:2]
        t_in = gi.producer.get(conv.input[0])
        t_out = gi.only(conv.output[0], "Transpose")
        if (
            min(c_in, c_out) < min_channels
            or t_in is None
            or t_in.op_type != "Transpose"
            or list(gi.attr(t_in, "perm", [])) != [0, 3, 1, 2]
            or t_out is None
            or list(gi.attr(t_out, "perm", [])) != [0, 2, 3, 1]
        ):
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
            return helper.make_node(
                op, inputs, [out if out == t_out.output[0] else p + out], name=p + out, **kw
            )

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
            node(
                "MatMul", [p + "v", const("u", u.reshape(pos, c_in, c_out).astype(np.float32))], "m"
            ),  # [a^2, T, C_out]
            node("Reshape", [p + "m", dims("s4", pos, -1)], "m2"),
            node("MatMul", [const("at", aa), p + "m2"], "o"),  # [m^2, T * C_out]
            node("Reshape", [p + "o", dims("s5", m, m, -1, th, tw, c_out)], "o6"),
            node("Transpose", [p + "o6"], "ot", perm=[2, 3, 0, 4, 1, 5]),
            node("Reshape", [p + "ot", dims("s6", -1, h, wd, c_out)], y),
        ]
        if bias is not None:
            insert[id(t_out)].append(
                node("Add", [p + "y", const("bias", bias.reshape(c_out))], t_out.output[0])
            )
        remove.update((id(conv), id(t_out)))
        if len(gi.consumers.get(t_in.output[0], [])) == 1 and t_in.output[0] not in gi.outputs:
            remove.add(id(t_in))
    if k:
        gi.replace(remove, insert, new_inits)
    return k
