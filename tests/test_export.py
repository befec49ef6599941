"""edgejax.export: ONNX files run in onnxruntime and StableHLO round trips equal JAX."""

import numpy as np
import pytest
import jax
from flax import nnx

from edgejax import export
from edgejax.bench import PAPER_MODELS, build_model
from edgejax.deploy import fuse

pytest.importorskip("jax2onnx")
pytest.importorskip("onnxruntime")

RES = 64
# CI: one CNN (RepVGG, fused) and one attention model (MobileViT v2); the rest with -m slow.
FAST = {"repvgg_a2", "mobilevitv2_050"}


def _jax_logits(model, x):
    graphdef, state = nnx.split(model)
    return np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x))


def _x(batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, RES, RES, 3), dtype=np.float32)


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in PAPER_MODELS]
)
def test_onnx_matches_jax(name, tmp_path):
    model = build_model(name)
    if name.startswith("repvgg"):
        model = fuse(model)  # the deploy form, as exported with --deploy
    path = export.export_onnx(
        model,
        str(tmp_path / f"{name}.onnx"),
        resolution=RES,
        dynamic_batch=name == "mobilevitv2_050",
    )
    x = _x(2 if name == "mobilevitv2_050" else 1)
    err = export.relative_error(export.run_onnx(path, x), _jax_logits(model, x))
    assert err <= 1e-4, err


@pytest.mark.parametrize("dynamic", [False, True])
def test_stablehlo_round_trip(dynamic, tmp_path):
    model = build_model("mobilenetv3_large_100")
    path = export.export_stablehlo(
        model, str(tmp_path / "m.stablehlo"), resolution=RES, batch_size=2, dynamic_batch=dynamic
    )
    exported = export.load_stablehlo(path)
    for b in (1, 3) if dynamic else (2,):
        x = _x(b, seed=b)
        got = np.asarray(exported.call(x))
        assert got.shape == (b, 1000)
        assert export.relative_error(got, _jax_logits(model, x)) <= 1e-5


def test_cli_stablehlo(tmp_path, capsys):
    out = tmp_path / "a0.stablehlo"
    rc = export.main(
        [
            "--model",
            "repvgg_a0",
            "--format",
            "stablehlo",
            "--out",
            str(out),
            "--resolution",
            "32",
            "--deploy",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert out.stat().st_size > 1e6
    assert "relative error" in capsys.readouterr().out


def test_cli_bad_input(tmp_path, capsys):
    out = str(tmp_path / "x.onnx")
    assert export.main(["--model", "repvgg_a9", "--format", "onnx", "--out", out]) == 2
    assert "Unknown model 'repvgg_a9'" in capsys.readouterr().err
    assert (
        export.main(["--model", "repvgg_a0", "--format", "onnx", "--out", out, "--batch", "0"]) == 2
    )
    assert "--batch-size must be a positive integer" in capsys.readouterr().err
    assert (
        export.main(
            ["--model", "repvgg_a0", "--format", "onnx", "--out", out, "--resolution", "16"]
        )
        == 2
    )
    assert "does not support resolution 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main(["--model", "repvgg_a0", "--format", "tensorrt", "--out", out])
    assert (
        export.main(["--model", "repvgg_a0", "--format", "stablehlo", "--out", out, "--winograd"])
        == 2
    )
    assert "--winograd applies to --format onnx only" in capsys.readouterr().err
    assert (
        export.main(
            ["--model", "repvgg_a0", "--format", "stablehlo", "--out", out, "--channels-last"]
        )
        == 2
    )
    assert "--channels-last applies to --format onnx only" in capsys.readouterr().err


def _map_transposes(proto):
    """(producer op, consumer ops, the ops that make the producer's inputs, a Transpose with
    its perm) of each Transpose of a map (not of a weight) in a graph."""
    inits = {i.name for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)

    def op(name):
        n = producer.get(name)
        if n is None:
            return "input"
        perm = [tuple(a.ints) for a in n.attribute if a.name == "perm"]
        return f"Transpose{perm[0]}" if n.op_type == "Transpose" and perm else n.op_type

    return [
        (
            producer[n.input[0]].op_type if n.input[0] in producer else "input",
            tuple(consumers.get(n.output[0], ["output"])),
            tuple(op(i) for i in getattr(producer.get(n.input[0]), "input", ()) if i not in inits),
        )
        for n in proto.graph.node
        if n.op_type == "Transpose" and n.input[0] not in inits
    ]


# Ops the layout pass can run in NCHW: a Transpose between two of them is one it left undone.
_LAYOUT_FREE = {"Conv", "Add", "Mul", "Sub", "Div", "Gelu", "Relu", "HardSwish", "HardSigmoid"}


@pytest.mark.parametrize(
    "name,matmuls_on_maps,map_transposes",
    [
        # 12 blocks and 4 stem/downsample norms: a Transpose before and after each of the 16
        # LayerNorms on a map, one for the input; the pooled head reads the NCHW map directly
        ("convnext_atto", 0, 33),
        # SE gates (mean, 1x1 convs, hard-sigmoid, multiply) stay NCHW; the input, and the
        # pooled features before the head's flatten
        ("mobilenetv3_small_050", 0, 2),
        # fc1 / fc2 of the 10 TinyViT blocks, and at 64 px the qkv / proj of the 8 blocks of
        # stages 2-3 (one window each, attended as a map) become 1x1 convs; stage 1's four
        # windows are tokens
        ("tiny_vit_5m_224", 36, None),
    ],
)
def test_the_layout_pass_keeps_the_values_and_leaves_no_transpose_between_convs(
    tmp_path, name, matmuls_on_maps, map_transposes
):
    import onnx

    model = fuse(build_model(name))
    x = _x(2)
    ref = _jax_logits(model, x)
    graphs = {}
    for cl in (False, True):
        path = export.export_onnx(
            model,
            str(tmp_path / f"cl{cl}.onnx"),
            resolution=RES,
            dynamic_batch=True,
            channels_first=not cl,
        )
        graphs[cl] = onnx.load(path)
        assert export.relative_error(export.run_onnx(path, x), ref) <= 1e-4, cl
    assert (
        export.relative_error(
            export.run_onnx(str(tmp_path / "clFalse.onnx"), x),
            export.run_onnx(str(tmp_path / "clTrue.onnx"), x),
        )
        <= 1e-5
    )
    ops = {cl: [n.op_type for n in g.graph.node] for cl, g in graphs.items()}
    assert ops[True].count("MatMul") - ops[False].count("MatMul") == matmuls_on_maps
    assert ops[False].count("Conv") - ops[True].count("Conv") == matmuls_on_maps
    left, before = _map_transposes(graphs[False]), _map_transposes(graphs[True])
    assert len(left) < len(before)
    if map_transposes is not None:
        assert len(left) == map_transposes, left

    # no Transpose between two ops the pass can run in NCHW, except after an add of a map only
    # at hand in NHWC (windows merged back from tokens: a Reshape, a crop where the map was
    # padded) to a residual that a LayerNorm reads in NHWC
    def nhwc_only(ops):  # made by an op the pass leaves in NHWC, not a copy of an NCHW map
        return any(p not in _LAYOUT_FREE and p != "Transpose(0, 2, 3, 1)" for p in ops)

    undone = [
        t
        for t in left
        if t[0] in _LAYOUT_FREE
        and set(t[1]) <= _LAYOUT_FREE
        and not (t[0] == "Add" and nhwc_only(t[2]))
    ]
    assert not undone, undone


def test_the_layout_pass_on_broadcasts_and_reductions(tmp_path):
    """Constants of every rank against a map, a left-hand constant, a scalar power, reductions
    with and without kept axes (over the map's axes and over channels), a value read both in
    NCHW and in NHWC: the same outputs as the graph before the pass."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgejax.export.layout import nchw_layout

    rng = np.random.default_rng(0)
    c = 4
    w = rng.standard_normal((c, c, 1, 1)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(rng.standard_normal((c,)).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((1, 1, c)).astype(np.float32), "b3"),
        numpy_helper.from_array(rng.standard_normal((1, 5, 1, 1)).astype(np.float32), "b4"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "hw"),
        numpy_helper.from_array(np.array([3], np.int64), "ch"),
        numpy_helper.from_array(rng.standard_normal((c, 3)).astype(np.float32), "fc"),
    ]
    n = helper.make_node
    nodes = [
        n("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        n("Conv", ["xt", "w"], ["y"]),
        n("Transpose", ["y"], ["a"], perm=[0, 2, 3, 1]),  # [1, 5, 6, c] NHWC
        n("Add", ["a", "b1"], ["a1"]),
        n("Sub", ["b3", "a1"], ["a2"]),  # constant on the left
        n("Mul", ["a2", "b4"], ["a3"]),  # broadcast over H
        n("Pow", ["a3", "two"], ["a4"]),
        n("Relu", ["a4"], ["a5"]),
        n("ReduceMean", ["a5", "hw"], ["pooled"], keepdims=0),  # [1, c]: same in both layouts
        n("ReduceMean", ["a5", "ch"], ["chmean"], keepdims=1),  # [1, 5, 6, 1]
        n("Mul", ["a5", "chmean"], ["a6"]),
        n("Transpose", ["a6"], ["a6t"], perm=[0, 3, 1, 2]),
        n("Conv", ["a6t", "w"], ["z"]),
        n("Transpose", ["z"], ["zt"], perm=[0, 2, 3, 1]),
        n("Add", ["zt", "a5"], ["out_map"]),  # a5 is read in NCHW here and as a graph output
        n("MatMul", ["out_map", "fc"], ["proj"]),  # a dense layer on a map: a 1x1 conv
    ]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", f32, [1, 5, 6, c])],
        [
            helper.make_tensor_value_info("pooled", f32, [1, c]),
            helper.make_tensor_value_info("a5", f32, [1, 5, 6, c]),
            helper.make_tensor_value_info("proj", f32, [1, 5, 6, 3]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    src = str(tmp_path / "g.onnx")
    onnx.save(model, src)
    # six map Transposes (four, and two around the MatMul made a conv); three stay: the
    # input's, and one for each graph output computed in NCHW (a5, proj)
    assert nchw_layout(model) == (1, 3)
    assert sorted(t[0] for t in _map_transposes(model)) == ["Conv", "Relu", "input"]
    dst = str(tmp_path / "g_nchw.onnx")
    onnx.save(model, dst)
    x = rng.standard_normal((1, 5, 6, c)).astype(np.float32)
    sess = [export.onnx_session(p) for p in (src, dst)]
    got = [s.run(None, {"x": x}) for s in sess]
    for a, b in zip(*got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_the_layout_pass_on_crops_and_adds_of_token_maps(tmp_path):
    """A Slice (a crop of the padded map) runs on the NCHW map between two convs; a map made
    from tokens (only at hand in NHWC) added to one that a LayerNorm also reads in NHWC: the
    add stays NHWC (its Transpose into the conv is left, not one of the token map and a second
    copy of the other). The same outputs as the graph before the pass."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgejax.export.layout import nchw_layout

    rng = np.random.default_rng(0)
    c = 4
    inits = [
        numpy_helper.from_array(rng.standard_normal((c, c, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((c,)).astype(np.float32), "scale"),
        numpy_helper.from_array(np.array([0, 1], np.int64), "starts"),
        numpy_helper.from_array(np.array([5, 6], np.int64), "ends"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.array([1, 25, c], np.int64), "tokens"),
        numpy_helper.from_array(np.array([1, 5, 5, c], np.int64), "map"),
    ]
    n = helper.make_node
    nodes = [
        n("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        n("Conv", ["xt", "w"], ["y"]),
        n("Transpose", ["y"], ["a"], perm=[0, 2, 3, 1]),  # [1, 6, 6, c] NHWC
        n("Slice", ["a", "starts", "ends", "axes"], ["s"]),  # [1, 5, 5, c]
        n("Relu", ["s"], ["r"]),
        n("Transpose", ["r"], ["rt"], perm=[0, 3, 1, 2]),
        n("Conv", ["rt", "w"], ["z"]),
        n("Transpose", ["z"], ["b"], perm=[0, 2, 3, 1]),
        n("LayerNormalization", ["b", "scale"], ["ln"], axis=-1),
        n("Reshape", ["ln", "tokens"], ["tok"]),
        n("Reshape", ["tok", "map"], ["m"]),
        n("Add", ["b", "m"], ["u"]),
        n("Transpose", ["u"], ["ut"], perm=[0, 3, 1, 2]),
        n("Conv", ["ut", "w"], ["o"]),
        n("Transpose", ["o"], ["out"], perm=[0, 2, 3, 1]),
    ]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", f32, [1, 6, 6, c])],
        [helper.make_tensor_value_info("out", f32, [1, 5, 5, c])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    src = str(tmp_path / "g.onnx")
    onnx.save(model, src)
    # the two around the crop go; left: the input's, b's for the LayerNorm and the add, the
    # add's into the last conv, and the output's
    assert nchw_layout(model) == (0, 2)
    assert sorted(t[0] for t in _map_transposes(model)) == ["Add", "Conv", "Conv", "input"]
    assert [nd.op_type for nd in model.graph.node if nd.input and nd.input[0] == "y"] == ["Slice"]
    dst = str(tmp_path / "g_nchw.onnx")
    onnx.save(model, dst)
    x = rng.standard_normal((1, 6, 6, c)).astype(np.float32)
    a, b = (export.onnx_session(p).run(None, {"x": x})[0] for p in (src, dst))
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_pretrained_that_does_not_fit(tmp_path, capsys):
    from safetensors.numpy import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"stem.conv_kxk.conv.weight": np.zeros((8, 3, 3, 3), np.float32)}, str(bad))
    rc = export.main(
        [
            "--model",
            "repvgg_a0",
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "x.onnx"),
            "--pretrained",
            str(bad),
            "--resolution",
            "32",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "stem.conv_kxk.conv.weight" in err  # the converter lists the bad / missing keys


def test_checkpoint_flag(tmp_path, capsys):
    try:
        from edgejax.train.checkpoint import load_model  # noqa: F401
    except ImportError:
        rc = export.main(
            [
                "--model",
                "repvgg_a0",
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "x.onnx"),
                "--checkpoint",
                str(tmp_path),
            ]
        )
        assert rc == 2
        assert "edgejax.train.checkpoint.load_model" in capsys.readouterr().err
    else:
        with pytest.raises(Exception):
            export.load_model("repvgg_a0", checkpoint=str(tmp_path / "missing"))


def test_layer_norms_become_single_onnx_ops(tmp_path):
    import onnx

    model = build_model("convnext_atto")  # 2+2+6+2 blocks: one LayerNorm each, plus the stem's
    x = _x(2)
    ref = _jax_logits(model, x)
    ops = {}
    for fused in (False, True):
        path = export.export_onnx(
            model,
            str(tmp_path / f"m{fused}.onnx"),
            resolution=RES,
            dynamic_batch=True,
            fuse_layer_norms=fused,
            channels_first=False,  # node for node as jax2onnx writes them (the layout pass
            # would run the unfused norms' reductions in NCHW)
        )
        ops[fused] = [n.op_type for n in onnx.load(path).graph.node]
        err = export.relative_error(export.run_onnx(path, x), ref)
        assert err <= 1e-4, (fused, err)
    n_ln = ops[True].count("LayerNormalization")
    assert n_ln >= 12 and "LayerNormalization" not in ops[False]
    # each fused LayerNorm replaced ten nodes, among them two ReduceMeans
    assert len(ops[False]) - len(ops[True]) == 9 * n_ln
    assert ops[False].count("ReduceMean") - ops[True].count("ReduceMean") == 2 * n_ln


def test_winograd_convs_match_the_direct_convs(tmp_path):
    import onnx

    # repvgg_a0 fused at 64 px: stage 3 has 13 stride-1 3x3 convs of 192 channels at 4x4, stage
    # 2 three of 96 channels at 8x8; the stride-2 convs and the stem stay direct.
    model = fuse(build_model("repvgg_a0"))
    x = _x(3)
    ref = _jax_logits(model, x)
    # the rewrite takes the graph as jax2onnx writes it (export_onnx runs it before the layout pass)
    path = export.export_onnx(
        model,
        str(tmp_path / "direct.onnx"),
        resolution=RES,
        dynamic_batch=True,
        channels_first=False,
    )
    direct = onnx.load(path)
    convs = [n.op_type for n in direct.graph.node].count("Conv")
    # At 64 px both maps are multiples of 4: the default tiles give F(4x4), tiles=(2,) F(2x2).
    # At 96 px (stage 2 at 12x12, stage 3 at 6x6) the default tiles mix F(4x4) and F(2x2), and
    # tiles=(4,) leaves stage 3 direct.
    for min_channels, tiles, res, expected in (
        (export.WINOGRAD_MIN_CHANNELS, export.WINOGRAD_TILES, RES, 13),
        (64, (2,), RES, 16),
        (64, (4, 2), 96, 16),
        (64, (4,), 96, 3),
        (1000, (4, 2), RES, 0),
    ):
        xr = (
            x
            if res == RES
            else np.random.default_rng(1).standard_normal((2, res, res, 3), dtype=np.float32)
        )
        ref_r = ref if res == RES else _jax_logits(model, xr)
        src = (
            path
            if res == RES
            else export.export_onnx(
                model,
                str(tmp_path / f"direct{res}.onnx"),
                resolution=res,
                dynamic_batch=True,
                channels_first=False,
            )
        )
        proto = onnx.load(src)
        n_conv = [n.op_type for n in proto.graph.node].count("Conv")
        assert export.winograd_convs(proto, min_channels=min_channels, tiles=tiles) == expected
        assert [n.op_type for n in proto.graph.node].count("Conv") == n_conv - expected
        out = tmp_path / f"w{min_channels}_{tiles}_{res}.onnx"
        onnx.save(proto, str(out))
        err = export.relative_error(export.run_onnx(str(out), xr), ref_r)
        assert err <= 1e-5, (min_channels, tiles, res, err)
    with pytest.raises(ValueError, match="tiles must be output tile sizes"):
        export.winograd_convs(onnx.load(path), tiles=(3,))
    # export_onnx(winograd=True) is the same rewrite
    path = export.export_onnx(
        model, str(tmp_path / "w.onnx"), resolution=RES, batch_size=3, winograd=True
    )
    assert [n.op_type for n in onnx.load(path).graph.node].count("Conv") == convs - 13
    assert export.relative_error(export.run_onnx(path, x), ref) <= 1e-5


def test_the_quantisers_per_tensor_notes_are_not_shown(caplog):
    """onnxruntime logs "Axis 1 is out-of-range for weight ..." on the root logger for every 1-D
    weight it quantises per tensor (17 lines for ConvNeXt-Atto): kept out; other warnings pass."""
    import logging

    from edgejax.export.quantize import _without_axis_notes

    with caplog.at_level("WARNING"), _without_axis_notes():
        logging.warning("Axis 1 is out-of-range for weight 'ln_fused_scale_3' with rank 1")
        logging.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    logging.warning("Axis 1 is out-of-range for weight 'w' with rank 1")  # only inside
    assert len(caplog.records) == 2
