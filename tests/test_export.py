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
    assert "--batch must be a positive integer" in capsys.readouterr().err
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


def test_channels_first_export_writes_1x1_convs(tmp_path, capsys):
    import onnx

    # tiny_vit_5m_224 at 64 px: stages 2-3 are one (padded) window each, so with the default
    # channels_first tracing their qkv, proj, fc1 and fc2 are Conv ops; --channels-last keeps
    # them MatMuls. Both match JAX.
    model = fuse(build_model("tiny_vit_5m_224"))
    x = _x(2)
    ref = _jax_logits(model, x)
    ops = {}
    for cl in (False, True):
        path = str(tmp_path / f"cl{cl}.onnx")
        rc = export.main(
            [
                "--model",
                "tiny_vit_5m_224",
                "--deploy",
                "--format",
                "onnx",
                "--out",
                path,
                "--resolution",
                str(RES),
                "--dynamic-batch",
                "--no-verify",
            ]
            + ["--channels-last"] * cl
        )
        assert rc == 0, capsys.readouterr().err
        ops[cl] = [n.op_type for n in onnx.load(path).graph.node]
        assert export.relative_error(export.run_onnx(path, x), ref) <= 1e-4
    n_blocks = sum(len(st.blocks) for st in model.stages[2:])
    assert ops[True].count("MatMul") - ops[False].count("MatMul") == 4 * n_blocks
    assert ops[False].count("Conv") - ops[True].count("Conv") == 4 * n_blocks


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
    path = export.export_onnx(
        model, str(tmp_path / "direct.onnx"), resolution=RES, dynamic_batch=True
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
                model, str(tmp_path / f"direct{res}.onnx"), resolution=res, dynamic_batch=True
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
