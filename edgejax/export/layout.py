"""The layout pass: a jax2onnx graph of an NHWC model rewritten so that its convolutions' maps
stay NCHW between them, in place.

The models compute in NHWC (XLA chooses physical layouts itself), so jax2onnx writes every
convolution as ``Transpose(NHWC -> NCHW) -> Conv -> Transpose(NCHW -> NHWC)`` and every dense
layer on a map as a ``MatMul`` over its last axis. onnxruntime's CPU convolutions run on a
channel-blocked NCHW layout and fuse a bias, an activation or a residual add into the conv only
when those ops sit between convs in that layout; every transpose left in between is a reorder
of the whole map. The pass

1. writes each ``MatMul`` of a 4-D map by a constant ``[C, D]`` matrix as a 1x1 ``Conv`` between
   the two transposes (the same sum);
2. moves each ``Transpose(NCHW -> NHWC)`` down through the element-wise ops that follow it
   (activations; ``Add`` / ``Mul`` / ... of two such maps or of a map and a constant, the
   constant permuted), through reductions over the map's axes and through slices (crops), to
   where it meets a ``Transpose(NHWC -> NCHW)``, and removes both;
3. keeps one ``Transpose`` back to NHWC for each value that an op which needs it (a
   ``LayerNormalization`` over channels, a ``Reshape``, the graph's output) still reads.

The values are unchanged (the same arithmetic, in another memory order); a map's transposes
only ever go away or move.
"""

from __future__ import annotations

import numpy as np

from .graph import _GraphIndex

TO_NCHW = (0, 3, 1, 2)  # Transpose perm: NHWC -> NCHW
TO_NHWC = (0, 2, 3, 1)  # NCHW -> NHWC

# element-wise ops whose inputs may be permuted together (broadcasting included)
_UNARY = {
    "Abs",
    "Cast",
    "Elu",
    "Erf",
    "Exp",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Neg",
    "Relu",
    "Sigmoid",
    "Softplus",
    "Sqrt",
    "Tanh",
}
_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"}
_REDUCE = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum"}


def _perm(node, gi) -> tuple | None:
    return tuple(gi.attr(node, "perm", ())) if node.op_type == "Transpose" else None


def matmuls_as_convs(model) -> int:
    """Step 1 above: ``MatMul(x [B, H, W, C], W [C, D])`` becomes ``Transpose -> Conv 1x1 ->
    Transpose`` (a following ``Add`` of a ``[D]`` bias is left for the layout pass, which moves
    it into NCHW, where onnxruntime fuses it into the conv). Returns how many."""
    from onnx import helper, numpy_helper

    gi = _GraphIndex(model)
    remove, insert, new_inits = set(), {}, []
    k = 0
    for mm in gi.g.node:
        if mm.op_type != "MatMul":
            continue
        w = gi.const(mm.input[1])
        shape = gi.shapes.get(mm.input[0])
        if w is None or w.ndim != 2 or shape is None or len(shape) != 4:
            continue
        p = f"layout_conv_{k}_"
        k += 1
        new_inits.append(
            numpy_helper.from_array(np.ascontiguousarray(w.T[:, :, None, None]), p + "w")
        )
        insert[id(mm)] = [
            helper.make_node("Transpose", [mm.input[0]], [p + "x"], name=p + "x", perm=TO_NCHW),
            helper.make_node("Conv", [p + "x", p + "w"], [p + "y"], name=p + "conv"),
            helper.make_node("Transpose", [p + "y"], [mm.output[0]], name=p + "y", perm=TO_NHWC),
        ]
        remove.add(id(mm))
    if k:
        gi.replace(remove, insert, new_inits)
    return k


def _permuted_const(arr: np.ndarray) -> np.ndarray | None:
    """A constant broadcast against an NHWC map, for the same broadcast against NCHW."""
    if arr.ndim == 0:
        return arr
    if arr.ndim > 4:
        return None
    return arr.reshape((1,) * (4 - arr.ndim) + arr.shape).transpose(TO_NCHW)


def _reduce_axes(node, gi) -> tuple[list[int] | None, bool]:
    """A reduction's axes (attribute before opset 18, input after) and whether they come from an
    input."""
    if len(node.input) > 1 and node.input[1]:
        axes = gi.const(node.input[1])
        return (None if axes is None else [int(a) for a in axes.reshape(-1)]), True
    axes = gi.attr(node, "axes")
    return (None if axes is None else list(axes)), False


def sink_transposes(model) -> int:
    """Steps 2 and 3 above. Returns how many ``Transpose`` ops of maps went away."""
    from onnx import helper, numpy_helper

    gi = _GraphIndex(model)
    g = gi.g

    def rank4(name):
        s = gi.shapes.get(name)
        return s is not None and len(s) == 4

    def map_transposes():
        return sum(1 for n in g.node if n.op_type == "Transpose" and n.input[0] not in gi.inits)

    def candidate(n):
        if n.op_type in _UNARY or n.op_type in _BINARY or n.op_type == "Clip":
            return rank4(n.output[0])
        if n.op_type in _REDUCE:
            return rank4(n.input[0]) and _reduce_axes(n, gi)[0] is not None
        if n.op_type == "Slice":  # constant starts / ends / axes / steps
            return rank4(n.output[0]) and all(not i or i in gi.inits for i in n.input[1:])
        return False

    # Values worth having in NCHW: those read by a Transpose to NCHW, by a reduction, or by a
    # candidate op whose own output is worth it (read backwards through the graph).
    wanted: set[str] = set()
    for n in reversed(g.node):
        if _perm(n, gi) == TO_NCHW or (n.op_type in _REDUCE and candidate(n)):
            wanted.add(n.input[0])
        elif candidate(n) and n.output[0] in wanted:
            wanted.update(i for i in n.input if i and i not in gi.inits)
    to_nchw = {}  # NHWC value -> an existing Transpose of it to NCHW
    for n in g.node:
        if _perm(n, gi) == TO_NCHW:
            to_nchw.setdefault(n.input[0], n.output[0])
    before = map_transposes()

    nchw: dict[str, str] = {}  # NHWC value -> the name of the same map in NCHW
    alias: dict[str, str] = {}  # output of a dropped Transpose to NCHW -> what replaces it
    back: dict[str, str] = {}  # NCHW output of a rewritten op -> its NHWC name
    new_inits, nodes = [], []

    def offer(name):
        """``name`` is computed in NHWC: its Transpose to NCHW, if the graph has one, is its
        NCHW form (a later op may read it; the node order is rebuilt at the end)."""
        if name in to_nchw and name not in nchw:
            nchw[name] = to_nchw[name]

    for i in g.input:
        offer(i.name)
    for n in g.node:
        n.input[:] = [alias.get(i, i) for i in n.input]
        perm = _perm(n, gi)
        if perm == TO_NHWC and rank4(n.output[0]):
            nchw.setdefault(n.output[0], n.input[0])
            nodes.append(n)
            continue
        if perm == TO_NCHW and n.output[0] not in gi.outputs:
            src = nchw.get(n.input[0])
            if src is not None and src != n.output[0]:
                alias[n.output[0]] = src
                continue
            nodes.append(n)
            continue
        tokens = _tokens_of_nchw(n, gi, nchw, wanted, new_inits, helper, numpy_helper)
        if tokens is not None:
            nodes.append(tokens)
            if n.op_type == "Reshape":  # a map from channel-major tokens: its NCHW form
                nodes.append(n)
                nchw[n.output[0]] = tokens.output[0]
            continue
        new = _in_nchw(n, gi, nchw, wanted, candidate, new_inits, numpy_helper)
        if new is None:
            nodes.append(n)
            for o in n.output:
                offer(o)
            continue
        nodes.extend(new)
        for t in new[:-1]:  # an input's Transpose to NCHW: later readers take it too
            nchw[t.input[0]] = t.output[0]
        new = new[-1]
        if n.op_type in _REDUCE and not gi.attr(n, "keepdims", 1):
            continue  # the output is the same array in both layouts: ``new`` writes it
        nchw[n.output[0]] = new.output[0]
        back[new.output[0]] = n.output[0]

    # An op that still reads a rewritten value in NHWC gets it from one Transpose back.
    read = {i for n in nodes for i in n.input} | gi.outputs
    for n in list(nodes):
        src = back.get(n.output[0])
        if src is not None and src in read:
            nodes.append(
                helper.make_node(
                    "Transpose", [n.output[0]], [src], name=src + "_nhwc", perm=TO_NHWC
                )
            )
    # Drop what nothing reads any more (Transposes the rewritten ops made useless).
    while True:
        read = {i for n in nodes for i in n.input} | gi.outputs
        keep = [n for n in nodes if any(o in read for o in n.output)]
        if len(keep) == len(nodes):
            break
        nodes = keep
    del g.node[:]
    g.node.extend(_topological(nodes, {i.name for i in g.input} | set(gi.inits)))
    produced = {o for n in g.node for o in n.output}
    info = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(info)
    gi.replace(set(), {}, new_inits)
    return before - map_transposes()


def _tokens_of_nchw(n, gi, nchw, wanted, new_inits, helper, numpy_helper):
    """Maps flattened into channel-major tokens and back (attention on a window, as TinyViT's):
    ``Reshape([B, H, W, C] -> [B, HW, C]) -> Transpose(0, 2, 1)`` of a map at hand in NCHW is a
    ``Reshape`` of the NCHW map to ``[B, C, HW]``, and ``Transpose(0, 2, 1)`` of ``[B, C, HW]``
    tokens reshaped to a ``[B, H, W, C]`` map that is wanted in NCHW is a ``Reshape`` of the
    tokens to ``[B, C, H, W]``. Returns the new Reshape (named as the Transpose it replaces, or
    as the map's NCHW form), or None."""
    shape = gi.shapes.get

    def reshape(src, dims, out):
        new_inits.append(numpy_helper.from_array(np.array(dims, np.int64), out + "_shape"))
        return helper.make_node("Reshape", [src, out + "_shape"], [out], name=out)

    if _perm(n, gi) == (0, 2, 1):
        r = gi.producer.get(n.input[0])
        if r is None or r.op_type != "Reshape" or r.input[0] not in nchw:
            return None
        s, t = shape(r.input[0]), shape(r.output[0])
        if s is None or t is None or len(s) != 4 or None in s[1:] or len(t) != 3:
            return None
        if t[1:] != (s[1] * s[2], s[3]):
            return None
        return reshape(nchw[r.input[0]], [-1, s[3], s[1] * s[2]], n.output[0])
    if n.op_type == "Reshape" and n.output[0] in wanted:
        tr = gi.producer.get(n.input[0])
        if tr is None or _perm(tr, gi) != (0, 2, 1):
            return None
        s, t = shape(tr.input[0]), shape(n.output[0])
        if s is None or t is None or len(s) != 3 or len(t) != 4 or None in t[1:]:
            return None
        if s[1:] != (t[3], t[1] * t[2]):
            return None
        return reshape(tr.input[0], [-1, t[3], t[1], t[2]], n.output[0] + "_nchw")
    return None


def _topological(nodes, available: set[str]) -> list:
    """``nodes`` in an order where each comes after the producers of its inputs, otherwise
    keeping their order."""
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    done, order, state = set(available), [], {}

    def visit(k):
        stack = [k]
        while stack:
            j = stack[-1]
            if state.get(j) == 2:
                stack.pop()
                continue
            state[j] = 1
            deps = [producer[i] for i in nodes[j].input if i and i not in done and i in producer]
            deps = [d for d in deps if state.get(d) != 2]
            if deps:
                if any(state.get(d) == 1 for d in deps):
                    raise ValueError("layout pass: the rewritten graph has a cycle")
                stack.extend(deps)
                continue
            state[j] = 2
            order.append(nodes[j])
            done.update(nodes[j].output)
            stack.pop()

    for k in range(len(nodes)):
        visit(k)
    return order


def _in_nchw(n, gi, nchw, wanted, candidate, new_inits, numpy_helper):
    """``n`` rewritten to read and write NCHW maps (a list of nodes: the op, after the Transpose
    of an input it needs), or None where it cannot be (or is not worth it)."""
    from onnx import helper

    if not candidate(n):
        return None
    is_reduce = n.op_type in _REDUCE
    if not is_reduce and n.output[0] not in wanted:
        # not read in NCHW later, but worth moving the Transposes below it when one of them can
        # go: an input whose every reader can follow it into NCHW (onnxruntime fuses a bias,
        # an activation or an add right after a conv)
        maps = [i for i in n.input if i and i not in gi.inits]
        if not any(all(candidate(c) for c in gi.consumers.get(i, [])) for i in maps):
            return None
    if n.op_type == "Slice":  # the same starts, ends and steps, along the permuted axes
        if n.input[0] not in nchw:
            return None
        starts = gi.const(n.input[1])
        axes = gi.const(n.input[3]) if len(n.input) > 3 and n.input[3] else range(len(starts))
        name = n.output[0] + "_nchw"
        new_axes = np.array([TO_NCHW.index(int(a) % 4) for a in np.reshape(axes, -1)], np.int64)
        new_inits.append(numpy_helper.from_array(new_axes, name + "_axes"))
        inputs = [nchw[n.input[0]], n.input[1], n.input[2], name + "_axes", *n.input[4:]]
        return [helper.make_node("Slice", inputs, [name], name=name)]
    if is_reduce:
        if n.input[0] not in nchw:
            return None
        axes, from_input = _reduce_axes(n, gi)
        axes = sorted(a % 4 for a in axes)
        new_axes = sorted(TO_NCHW.index(a) for a in axes)
        if not gi.attr(n, "keepdims", 1):
            # without the reduced axes the NCHW result must be in the NHWC result's order
            left = [TO_NCHW[a] for a in range(4) if a not in new_axes]
            if left != sorted(left):
                return None
        name = n.output[0] if not gi.attr(n, "keepdims", 1) else n.output[0] + "_nchw"
        inputs = [nchw[n.input[0]]]
        kw = {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name != "axes"}
        if from_input:
            new_inits.append(numpy_helper.from_array(np.array(new_axes, np.int64), name + "_axes"))
            inputs.append(name + "_axes")
        else:
            kw["axes"] = new_axes
        return [helper.make_node(n.op_type, inputs, [name], name=name, **kw)]
    inputs, pre = [], []
    for j, i in enumerate(n.input):
        if not i:
            inputs.append(i)
        elif i in nchw:
            inputs.append(nchw[i])
        elif i in gi.inits:
            arr = gi.const(i)
            if n.op_type == "Clip" or (n.op_type == "Pow" and j == 1):
                if arr.ndim:
                    return None
                inputs.append(i)
                continue
            arr = _permuted_const(arr)
            if arr is None:
                return None
            new_name = f"{n.output[0]}_nchw_c{j}"
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), new_name))
            inputs.append(new_name)
        elif (
            n.op_type in _BINARY
            and not pre
            and n.output[0] in wanted
            and any(k in nchw for k in n.input)
            and len(gi.shapes.get(i) or ()) == 4
            and not any(_read_in_nhwc(k, n, gi, candidate) for k in n.input if k in nchw)
        ):
            # a map only at hand in NHWC (e.g. attention's output, back from tokens) added to
            # one in NCHW whose sum a conv reads: the Transpose moves from the sum to this input.
            # Not where the NCHW operand is read in NHWC too (a LayerNorm): its NHWC copy is
            # made anyway, so the sum stays NHWC and the conv's Transpose of it is left, which
            # onnxruntime folds into its layout change before the conv, where this one would be
            # a transpose of its own and a second copy of that operand.
            pre.append(
                helper.make_node(
                    "Transpose", [i], [i + "_to_nchw"], name=i + "_to_nchw", perm=TO_NCHW
                )
            )
            inputs.append(i + "_to_nchw")
        else:
            return None  # an NHWC value with no NCHW form at hand
    kw = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    name = n.output[0] + "_nchw"
    return [*pre, helper.make_node(n.op_type, inputs, [name], name=name, **kw)]


def _read_in_nhwc(name, node, gi, candidate) -> bool:
    """Whether a reader of ``name`` other than ``node`` needs it in NHWC (an op the pass
    leaves in NHWC, or the graph's output)."""
    if name in gi.outputs:
        return True
    return any(
        list(c.output) != list(node.output) and not candidate(c) and _perm(c, gi) != TO_NCHW
        for c in gi.consumers.get(name, [])
    )


def nchw_layout(model) -> tuple[int, int]:
    """Both rewrites; returns (MatMuls made 1x1 convs, map Transposes removed)."""
    return matmuls_as_convs(model), sink_transposes(model)
