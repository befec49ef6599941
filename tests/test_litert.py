"""LiteRT export and int8 post-training quantization (ONNX and LiteRT): files run in their
runtimes as the JAX model does, quantised files stay close, bad calibration input is named."""

import json

import numpy as np
import pytest
import jax
from flax import nnx

from edgejax import export
from edgejax.bench import PAPER_MODELS, build_model
from edgejax.deploy import fuse

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnxruntime")

# CI: one CNN and one attention model; the rest with -m slow. TinyViT's windows need 224 px.
FAST = {"mobilenetv3_large_100", "mobilevitv2_050"}
RES = {"tiny_vit_21m_224": 224}


def _jax_logits(model, x):
    graphdef, state = nnx.split(model)
    return np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x))


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in PAPER_MODELS]
)
def test_litert_matches_jax(name, tmp_path):
    res = RES.get(name, 64)
    model = fuse(build_model(name))
    path = export.export_litert(
        model, str(tmp_path / f"{name}.tflite"), resolution=res, batch_size=2, name=name
    )
    run, shape = export.litert_runner(path)
    assert shape == [2, res, res, 3]
    x = np.random.default_rng(0).standard_normal((2, res, res, 3), dtype=np.float32)
    err = export.relative_error(run(x), _jax_logits(model, x))
    assert err <= 1e-4, err


@pytest.fixture(scope="module")
def cal():
    return export.calibration_images("mobilenetv3_small_050", "digits", samples=32, image_size=32)


def test_calibration_images_use_the_eval_transform(cal):
    from edgejax.data import build_source
    from edgejax.data import transforms as T
    from edgejax.registry import model_info

    assert cal.shape == (32, 32, 32, 3) and cal.dtype == np.float32
    src, _ = build_source("digits", "train")
    first = np.random.default_rng(0).permutation(len(src))[0]  # the seeded draw
    info = model_info("mobilenetv3_small_050")
    img = T.center_crop_resize(src[int(first)][0], 32, info["crop_pct"], info["interpolation"])
    mean, std = (np.float32(255) * np.asarray(info[k], np.float32) for k in ("mean", "std"))
    want = (img - mean) / std
    np.testing.assert_allclose(cal[0], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_int8_stays_close_to_float(fmt, tmp_path, cal):
    """A fused, int8-quantised MobileNetV3 against its float JAX logits on the calibration set:
    close, not equal; the file holds int8 weights (a quarter of the float file)."""
    model = fuse(build_model("mobilenetv3_small_050"))
    ref = _jax_logits(model, cal)
    fp32 = tmp_path / f"fp32.{fmt}"
    q = tmp_path / f"int8.{fmt}"
    if fmt == "onnx":
        export.export_onnx(model, str(fp32), resolution=32, batch_size=1)
        export.quantize_onnx(str(fp32), str(q), cal)
        sess = export.onnx_session(str(q))
        got = np.concatenate([export.run_onnx(sess, c[None]) for c in cal])
        import onnx

        ops = {n.op_type for n in onnx.load(str(q)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    else:
        export.export_litert(model, str(fp32), resolution=32)
        export.export_litert(
            model, str(q), resolution=32, quantize="int8", calibration=cal, int8_io=True
        )
        run, _ = export.litert_runner(str(q))
        got = np.concatenate([run(c[None]) for c in cal])
    assert q.stat().st_size < 0.4 * fp32.stat().st_size
    err = export.relative_error(got, ref)
    assert 1e-4 < err < 0.1, err  # quantised (not the float graph), and close


def _op_names(path):
    from collections import Counter
    from ai_edge_litert.interpreter import Interpreter

    return Counter(op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details())


def _delegate_nodes(path):
    """Delegate nodes once the tensors are allocated: the pieces XNNPACK runs the graph in."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in it._get_ops_details())


def _out_dtype(path, op_name):
    """The dtypes of the outputs of every ``op_name`` op in the file."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    ops = [op for op in it._get_ops_details() if op["op_name"] == op_name]
    return {dtypes[i] for op in ops for i in op["outputs"]}


def test_litert_activations_gelu_one_op_int8_runs(tmp_path):
    """Exact GELU goes to LiteRT as its builtin GELU (one op per activation, not erf's
    polynomial), float and int8, and ConvNeXt's int8 file runs in the runtime (it aborted the
    process while erf's elementwise ops were quantised), in one XNNPACK piece unless every op is
    int8 (full_integer); MobileNetV3's int8 hard-swish is kept
    as elementwise ops XNNPACK runs (the int8 HARD_SWISH kernel refuses wide input ranges), its
    float one stays one HARD_SWISH."""
    x = np.random.default_rng(0).standard_normal((16, 32, 32, 3), dtype=np.float32)
    cnx = fuse(build_model("convnext_atto"))
    f32 = export.export_litert(cnx, str(tmp_path / "c.tflite"), resolution=32)
    ops = _op_names(f32)
    assert ops["GELU"] == 12 and "EXP" not in ops, ops  # 2 + 2 + 6 + 2 blocks
    run, _ = export.litert_runner(f32)
    ref = _jax_logits(cnx, x[:1])
    assert export.relative_error(run(x[:1]), ref) <= 1e-4
    # int8: by default GELU and the LayerNorms' statistics stay float and XNNPACK takes the
    # whole graph; full_integer quantises them too and the graph falls apart into pieces
    for full, want_delegates in ((False, 1), (True, None)):
        q = export.export_litert(
            cnx,
            str(tmp_path / f"c8{full}.tflite"),
            resolution=32,
            quantize="int8",
            calibration=x,
            full_integer=full,
        )
        ops = _op_names(q)
        assert ops["GELU"] == 12 and ops["CONV_2D"] > 0, ops
        want = {np.int8 if full else np.float32}
        assert _out_dtype(q, "GELU") | _out_dtype(q, "RSQRT") == want
        assert _out_dtype(q, "CONV_2D") == {np.int8}
        delegates = _delegate_nodes(q)
        assert delegates == want_delegates if want_delegates else delegates > 10, delegates
        run, _ = export.litert_runner(q)
        assert 1e-4 < export.relative_error(run(x[:1]), ref) < 0.2
    mnv3 = fuse(build_model("mobilenetv3_small_050"))
    f32 = export.export_litert(mnv3, str(tmp_path / "m.tflite"), resolution=32)
    q = export.export_litert(
        mnv3, str(tmp_path / "m8.tflite"), resolution=32, quantize="int8", calibration=x
    )
    assert _op_names(f32)["HARD_SWISH"] > 0
    ops = _op_names(q)
    assert "HARD_SWISH" not in ops and "RELU_0_TO_1" not in ops, ops
    assert _delegate_nodes(q) == 1  # XNNPACK takes the whole int8 graph


def test_litert_int8_ranges_clip_outliers(tmp_path, cal):
    """Percentile ranges (the default) leave out a few outlier values that set min/max ranges:
    one bright pixel in 32 calibration images widens the min/max input scale, not the
    percentile one."""
    from ai_edge_litert.interpreter import Interpreter

    model = fuse(build_model("mobilenetv3_small_050"))
    wild = cal.copy()
    wild[0, 5, 5, :] = 1000.0
    scale = {}
    for method in ("percentile", "minmax"):
        path = export.export_litert(
            model,
            str(tmp_path / f"{method}.tflite"),
            resolution=32,
            quantize="int8",
            calibration=wild,
            calibration_method=method,
            int8_io=True,
        )
        scale[method] = Interpreter(model_path=path).get_input_details()[0]["quantization"][0]
    assert scale["minmax"] > 1000 / 256 > 10 * scale["percentile"], scale
    with pytest.raises(ValueError, match="calibration method must be one of"):
        export.export_litert(model, "x.tflite", quantize="int8", calibration_method="entropy")


def test_cli_litert_and_int8(tmp_path, capsys):
    base = ["--model", "mobilenetv3_small_050", "--resolution", "32"]
    out = tmp_path / "m16.tflite"
    assert (
        export.main(
            base + ["--format", "tflite", "--out", str(out), "--dtype", "float16", "--batch", "2"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "litert float16" in text and "relative error" in text
    run, shape = export.litert_runner(str(out))
    assert shape == [2, 32, 32, 3]
    out = tmp_path / "m8.onnx"
    assert (
        export.main(
            base
            + [
                "--format",
                "onnx",
                "--out",
                str(out),
                "--quantize",
                "int8",
                "--calibration",
                "digits",
                "--calibration-samples",
                "16",
                "--dynamic-batch",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "exporting the fused model" in text and "top-1 agreement" in text


def test_bad_calibration_input_is_named(tmp_path, capsys):
    base = [
        "--model",
        "mobilenetv3_small_050",
        "--resolution",
        "32",
        "--out",
        str(tmp_path / "x.tflite"),
    ]
    cases = [
        (["--format", "litert", "--quantize", "int8"], "needs --calibration DATA"),
        (
            ["--format", "stablehlo", "--quantize", "int8", "--calibration", "digits"],
            "applies to --format onnx or litert",
        ),
        (["--format", "onnx", "--calibration", "digits"], "--calibration needs --quantize"),
        (
            ["--format", "onnx", "--quantize", "int8", "--calibration", "digits", "--int8-io"],
            "--int8-io applies to --format litert",
        ),
        (["--format", "litert", "--full-integer"], "--full-integer needs --quantize int8"),
        (
            ["--format", "onnx", "--quantize", "int8", "--calibration", "digits"]
            + ["--full-integer"],
            "--full-integer applies to --format litert",
        ),
        (
            [
                "--format",
                "litert",
                "--quantize",
                "int8",
                "--calibration",
                "digits",
                "--calibration-samples",
                "4",
            ],
            "at least 16 images",
        ),
        (
            [
                "--format",
                "litert",
                "--quantize",
                "int8",
                "--calibration",
                "digits",
                "--calibration-split",
                "test",
                "--calibration-samples",
                "5000",
            ],
            "fewer than the 5000 calibration samples",
        ),
        (
            ["--format", "litert", "--quantize", "int8", "--calibration", str(tmp_path / "no")],
            "does not exist",
        ),
        (["--format", "litert", "--dynamic-batch"], "fixed --batch"),
        (
            [
                "--format",
                "litert",
                "--quantize",
                "int8",
                "--calibration",
                "digits",
                "--calibration-method",
                "entropy",
            ],
            "percentile or minmax, not entropy",
        ),
        (["--format", "onnx", "--calibration-method", "minmax"], "needs --quantize"),
        (
            [
                "--format",
                "onnx",
                "--quantize",
                "int8",
                "--calibration",
                "digits",
                "--no-fuse",
                "--deploy",
            ],
            "contradict each other",
        ),
        (["--format", "onnx", "--dtype", "float16"], "applies to --format litert only"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append(
        (
            ["--format", "litert", "--quantize", "int8", "--calibration", str(tmp_path / "empty")],
            "empty",
        )
    )
    for extra, want in cases:
        assert export.main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert want in err, (extra, err)
    assert not (tmp_path / "x.tflite").exists()


def test_a_file_the_runtime_cannot_load_is_named():
    from edgejax.export.litert import _check_loads

    with pytest.raises(RuntimeError, match="repvgg_a0: the int8 LiteRT file does not run"):
        _check_loads(b"not a flatbuffer", "repvgg_a0")


def test_validate_reads_tflite(tmp_path, capsys):
    """validate --tflite gives the JAX model's numbers (one eval transform for every format)."""
    from edgejax.validate import main as validate
    from safetensors.numpy import save_file
    import edgejax
    from edgejax.convert import to_timm

    w = tmp_path / "w.safetensors"
    save_file(
        to_timm(edgejax.create_model("mobilenetv3_small_050", num_classes=10, rngs=2)), str(w)
    )
    out = tmp_path / "m.tflite"
    assert (
        export.main(
            [
                "--model",
                "mobilenetv3_small_050",
                "--pretrained",
                str(w),
                "--format",
                "litert",
                "--out",
                str(out),
                "--resolution",
                "32",
                "--batch",
                "8",
            ]
        )
        == 0
    )
    capsys.readouterr()
    res = {}
    for src in (["--pretrained", str(w)], ["--tflite", str(out)]):
        assert (
            validate(
                [
                    "--model",
                    "mobilenetv3_small_050",
                    *src,
                    "--data",
                    "digits",
                    "--image-size",
                    "32",
                    "--json",
                ]
            )
            == 0
        )
        res[src[0]] = json.loads(capsys.readouterr().out)
    a, b = res["--pretrained"], res["--tflite"]
    assert a["count"] == b["count"] > 0
    assert abs(a["top1"] - b["top1"]) <= 100 / a["count"]  # at most one image flips
    assert abs(a["loss"] - b["loss"]) < 1e-3


def test_converter_failures_are_named(monkeypatch):
    """A missing extra, an op the converter cannot lower, a StableHLO version TensorFlow cannot
    read: one message naming the model and the ops or both versions."""
    import sys
    import tensorflow as tf
    from edgejax.export.litert import _converter_message, _tensorflow

    err = Exception(
        '<unknown>:0: error: loc("x"): failed to legalize operation '
        "'stablehlo.custom_call' that was explicitly marked illegal\nnote: see"
    )
    msg = _converter_message("tiny_vit_21m_224", err)
    assert msg.startswith(
        "tiny_vit_21m_224: the LiteRT converter cannot lower stablehlo.custom_call to builtin ops"
    )
    err = Exception(
        "error: failed to deserialize portable artifact using StableHLO_v1.13.0; "
        "the producer version 1.14.2 is newer"
    )
    msg = _converter_message("repvgg_a2", err)
    assert (
        f"TensorFlow {tf.__version__} cannot read the StableHLO that JAX {jax.__version__}" in msg
        and msg.startswith("repvgg_a2: ")
    )
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"pip install 'edgejax\[litert\]'"):
        _tensorflow()
