"""LiteRT (TFLite) export: the model exported to StableHLO by ``jax.export``, wrapped in a
TensorFlow function as one ``XlaCallModule`` op, then converted by TensorFlow's
``TFLiteConverter`` to builtin ops only; float32, float16 weights, or full-integer int8 from a
calibration set (by default with the few ops XNNPACK has no int8 kernels for left in float32,
``LITERT_FLOAT_OPS``; ``full_integer=True`` for integer-only targets). Needs the ``litert``
extra (``tensorflow-cpu`` and ``ai-edge-litert``).

    from edgejax.export import export_litert, litert_runner
    export_litert(model, "m.tflite", resolution=224)
    run, input_shape = litert_runner("m.tflite")
    logits = run(images_nhwc)                     # float32 in and out, whatever the file's I/O
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import numpy as np

from ..layers.blocks import litert_activations
from ..layers.core import depthwise_impl
from .common import _default_resolution, _input_spec

__all__ = [
    "export_litert",
    "litert_runner",
    "LITERT_DTYPES",
    "LITERT_CALIBRATION_METHODS",
    "LITERT_FLOAT_OPS",
]

log = logging.getLogger("edgejax.export")
LITERT_DTYPES = ("float32", "float16")
LITERT_CALIBRATION_METHODS = ("percentile", "minmax")
# Ops an int8 file keeps in float32 unless full_integer: XNNPACK, LiteRT's CPU runtime, has no
# int8 kernels for them, so int8 they run in the builtin reference kernels and cut the graph
# into many XNNPACK partitions with a round trip through the interpreter between each (TinyViT's
# int8 file was slower than its float32 one, docs/results/cpu_latency.md).
# Float, XNNPACK runs them and the whole graph stays one partition; the convs and dense layers,
# where the multiply-adds are, stay int8. The statistics of each normalisation (sum of squares /
# n + eps, whose tiny eps XNNPACK's int8 ADD refuses) are kept float with them
# (``_statistics_nodes``; other sums, e.g. squeeze-excitation's mean, stay int8). A RELU left as
# an op of its own (MobileViT v2's relu(v); the others are fused into convs) gets an output scale
# of its own, which XNNPACK's int8 clamp refuses (it keeps its input's).
LITERT_FLOAT_OPS = ("BATCH_MATMUL", "SOFTMAX", "GELU", "RSQRT", "RELU")
_EXTRA = "pip install 'edgejax[litert]' (tensorflow-cpu and ai-edge-litert)"


class _NativeStderr:
    """Hold what native code writes to file descriptor 2 (TensorFlow's and LiteRT's start-up
    banners, absl's "before InitializeLog" notes, the converter's ignored-flag warnings: noise to
    a user) and drop it, unless the block raises: then it is written out after all."""

    def __enter__(self):
        import tempfile

        sys.stderr.flush()
        self.saved, self.tmp = os.dup(2), tempfile.TemporaryFile()
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, exc_type, *_):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        if exc_type is not None:
            self.tmp.seek(0)
            sys.stderr.write(self.tmp.read().decode(errors="replace"))
        self.tmp.close()
        return False


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _NativeStderr():
            import tensorflow as tf
    except ImportError as e:
        raise ImportError(f"LiteRT export needs TensorFlow ({e}): {_EXTRA}") from None
    return tf


def _concrete_function(tf, forward, shape):
    """``forward`` as a TensorFlow concrete function holding one ``XlaCallModule`` op (what
    jax2tf's native serialization writes), with the StableHLO serialized at the version JAX
    guarantees for consumers 12 weeks old: TensorFlow's reader lags JAX's writer, and at the
    4-week version ``jax.export`` uses, composite ops take a form TensorFlow cannot read."""
    import jax
    from jax.extend.mlir.dialects import stablehlo as hlo
    from tensorflow.compiler.tf2xla.python import xla as tfxla

    exported = jax.export.export(jax.jit(forward), platforms=["cpu"])(
        jax.ShapeDtypeStruct(shape, np.float32)
    )
    target = hlo.get_version_from_compatibility_requirement(
        hlo.StablehloCompatibilityRequirement.WEEK_12
    )
    module = hlo.serialize_portable_artifact_str(exported.mlir_module(), target)
    (out,) = exported.out_avals

    def call(x):
        (y,) = tfxla.call_module(
            [x],
            version=exported.calling_convention_version,
            module=module,
            Tout=[tf.float32],
            Sout=[out.shape],
            platforms=["CPU"],
            disabled_checks=[],
            use_shardy_partitioner=bool(jax.config.jax_use_shardy_partitioner),
        )
        return y

    fn = tf.function(
        call, input_signature=[tf.TensorSpec(shape, tf.float32, name="input")], autograph=False
    )
    return fn, fn.get_concrete_function()


def _interpreter_cls():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError(f"running a .tflite file needs the LiteRT runtime: {_EXTRA}") from None
    return Interpreter


def export_litert(
    model,
    path: str,
    *,
    resolution: int | None = None,
    batch_size: int = 1,
    dtype: str = "float32",
    quantize: str | None = None,
    calibration: np.ndarray | None = None,
    int8_io: bool = False,
    calibration_method: str = "percentile",
    full_integer: bool = False,
    name: str | None = None,
) -> str:
    """Write ``model`` (eval mode) as a LiteRT flatbuffer; returns ``path``.

    Input [batch, H, W, C] float32 NHWC normalised as for the JAX model, output float32 logits.
    ``dtype="float16"``: float16 weights (half the file; the runtime computes in float32 or,
    where the CPU has it, float16). ``quantize="int8"``: full-integer post-training
    quantization, activation ranges from ``calibration`` (normalised float32 images [N, H, W,
    C], e.g. ``calibration_images``) by ``calibration_method``: "percentile" (each tensor's
    range from its 0.01th to 99.99th percentile, as the ONNX quantizer's default) or "minmax"
    (its extremes); ``int8_io`` makes the input and output int8 too (their
    scale and zero point are in the file; ``litert_runner`` applies them). The ops of
    ``LITERT_FLOAT_OPS`` and the normalisations' statistics stay float32 (XNNPACK runs the whole
    graph), unless ``full_integer``: every op int8, for integer-only runtimes (microcontrollers,
    NPUs). Fuse the model first
    (``edgejax.deploy.fuse``): folded BatchNorms quantise as one conv. An int8 file the runtime
    cannot load raises a ``RuntimeError`` naming the model, and nothing is written.
    """
    import jax
    from flax import nnx

    tf = _tensorflow()
    name = name or type(model).__name__
    if dtype not in LITERT_DTYPES:
        raise ValueError(f"dtype must be one of {LITERT_DTYPES}, got {dtype!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if quantize and dtype != "float32":
        raise ValueError("int8 quantization starts from float32 weights: drop dtype=float16")
    if int8_io and not quantize:
        raise ValueError("int8 input/output needs quantize='int8'")
    if full_integer and not quantize:
        raise ValueError("full_integer needs quantize='int8'")
    if calibration_method not in LITERT_CALIBRATION_METHODS:
        raise ValueError(
            f"LiteRT calibration method must be one of {LITERT_CALIBRATION_METHODS}, "
            f"got {calibration_method!r}"
        )
    resolution = _default_resolution(model, resolution)
    shape = _input_spec(model, resolution, batch_size, dynamic_batch=False)
    if quantize:
        calibration = _check_calibration(calibration, shape)
    model.eval()
    with depthwise_impl(model, "bands"):  # grouped convs XNNPACK has fast kernels for
        graphdef, state = nnx.split(model)
    state = jax.tree.map(lambda v: np.asarray(v) if isinstance(v, jax.Array) else v, state)

    def forward(x):
        return nnx.merge(graphdef, state)(x).astype(np.float32)

    with litert_activations(int8=quantize == "int8"):
        fn, concrete = _concrete_function(tf, forward, shape)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    if quantize:
        batches = [
            calibration[i : i + batch_size]
            for i in range(0, len(calibration) - batch_size + 1, batch_size)
        ]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = conv.inference_output_type = tf.int8
        # the converter's calibrator sees one batch (it marks which tensors take ranges); the
        # ranges come from every batch in _set_ranges
        conv.representative_dataset = lambda: ([b] for b in batches[:1])
        calibrated = _run_converter(conv, name, calibrate_only=True)
        float_nodes = None if full_integer else _statistics_nodes(calibrated)
        methods = [calibration_method] + (["minmax"] if calibration_method != "minmax" else [])
        for method in methods:
            try:
                flat = _quantize_with_ranges(
                    tf, calibrated, batches, method, int8_io, full_integer, float_nodes, name
                )
                _check_loads(flat, name)
                break
            except RuntimeError:
                if method == methods[-1]:
                    raise
                # the percentile-ranged file of a few graphs has been refused by the runtime
                # (seen: ConvNeXt on random weights, XNNPACK "failed to create runtime");
                # min/max ranges are the fallback, said in one line
                log.warning(
                    "%s: the int8 file with %s ranges does not run in the LiteRT runtime; "
                    "quantised with min/max ranges instead",
                    name,
                    method,
                )
    else:
        flat = _run_converter(conv, name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flat)
    return str(path)


def _run_converter(conv, name: str, *, calibrate_only: bool = False) -> bytes:
    import warnings

    conv._experimental_calibrate_only = calibrate_only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Statistics for quantized inputs ..."
        try:
            with _NativeStderr():
                return conv.convert()
        except Exception as e:  # the converter raises its own ConverterError with MLIR text
            raise RuntimeError(_converter_message(name, e)) from None


def _quantize_with_ranges(
    tf,
    calibrated: bytes,
    batches,
    method: str,
    int8_io: bool,
    full_integer: bool,
    float_nodes: list[str] | None,
    name: str,
) -> bytes:
    """Int8 quantization of the converter's calibrated model, each activation's range set by
    ``method`` (``_set_ranges``), by the converter's own quantizer (``mlir_quantize``); the ops
    of ``LITERT_FLOAT_OPS`` and ``float_nodes`` (by output name) stay float32 unless
    ``full_integer``."""
    from tensorflow.lite.python.convert import mlir_quantize

    io_type = tf.int8 if int8_io else tf.float32
    ranged = _set_ranges(calibrated, batches, method)
    float_ops = None if full_integer else list(LITERT_FLOAT_OPS)
    try:
        with _NativeStderr():
            return mlir_quantize(
                ranged,
                input_data_type=io_type,
                output_data_type=io_type,
                denylisted_ops=float_ops,
                denylisted_nodes=float_nodes,
            )
    except Exception as e:
        raise RuntimeError(_converter_message(name, e)) from None


def _statistics_nodes(flat: bytes) -> list[str]:
    """Names of the ops computing each normalisation's 1/sqrt(variance + eps) from its sum of
    squares (SUM -> MUL by 1/n -> ADD eps -> RESHAPE -> RSQRT, walked back from each RSQRT): the
    quantizer takes ops to keep float by their output tensor's name."""
    from tensorflow.lite.tools import flatbuffer_utils

    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.convert_bytearray_to_object(flat)
    graph = model.subgraphs[0]

    def op_name(op):
        code = model.operatorCodes[op.opcodeIndex]
        return names.get(max(code.builtinCode, code.deprecatedBuiltinCode))

    producer = {t: op for op in graph.operators for t in op.outputs}
    nodes = []
    for op in graph.operators:
        if op_name(op) != "RSQRT":
            continue
        cur = producer.get(op.inputs[0])
        while cur is not None and op_name(cur) in ("RESHAPE", "ADD", "MUL", "SUM"):
            nodes.append(graph.tensors[cur.outputs[0]].name.decode())
            if op_name(cur) == "SUM":
                break
            cur = producer.get(cur.inputs[0])
    return nodes


def _set_ranges(calibrated: bytes, batches, method: str, samples: int = 1 << 16) -> bytes:
    """The converter's calibrated float model with each tensor's range [min, max] taken from
    running every calibration batch: the extremes (``minmax``), or the (100 - p)th and pth
    percentiles, p = ``PERCENTILE`` (``percentile``: the ONNX quantizer's default, a few outliers
    no longer set the scale), from up to ``samples`` values per tensor drawn evenly from the
    batches (seeded). Zero stays inside every range."""
    from tensorflow.lite.tools import flatbuffer_utils

    from ai_edge_litert.interpreter import OpResolverType

    from .quantize import PERCENTILE

    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    tensors = model.subgraphs[0].tensors
    ids = [
        i
        for i, t in enumerate(tensors)
        if t.quantization is not None
        and t.quantization.min is not None
        and len(t.quantization.min) == 1
    ]
    interp = _interpreter_cls()(
        model_content=calibrated,
        experimental_preserve_all_tensors=True,  # intermediate values, so no delegate
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    rng = np.random.default_rng(0)
    per_batch = max(1, samples // len(batches))
    lo, hi = {i: np.inf for i in ids}, {i: -np.inf for i in ids}
    drawn = {i: [] for i in ids}
    for b in batches:
        interp.set_tensor(index, b)
        interp.invoke()
        for i in ids:
            v = interp.get_tensor(i).ravel()
            lo[i], hi[i] = min(lo[i], float(v.min())), max(hi[i], float(v.max()))
            if method == "percentile":
                drawn[i].append(v if v.size <= per_batch else rng.choice(v, per_batch, False))
    for i in ids:
        if method == "percentile" and hi[i] > lo[i]:
            lo[i], hi[i] = np.percentile(np.concatenate(drawn[i]), [100 - PERCENTILE, PERCENTILE])
        if hi[i] <= lo[i]:  # a constant tensor (a band of padding): the converter's range
            continue
        tensors[i].quantization.min = [min(float(lo[i]), 0.0)]
        tensors[i].quantization.max = [max(float(hi[i]), 0.0)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _check_calibration(calibration, shape) -> np.ndarray:
    if calibration is None:
        raise ValueError("int8 quantization needs calibration images (calibration_images)")
    cal = np.asarray(calibration, np.float32)
    if cal.ndim != 4 or cal.shape[1:] != tuple(shape[1:]):
        raise ValueError(
            f"calibration images must be [N, {shape[1]}, {shape[2]}, {shape[3]}], "
            f"got {list(cal.shape)}"
        )
    if len(cal) < shape[0]:
        raise ValueError(f"{len(cal)} calibration images for a batch of {shape[0]}")
    return cal


def _converter_message(name: str, e: Exception) -> str:
    """The converter's MLIR diagnostics -> one sentence naming the model and the ops."""
    import jax
    import tensorflow as tf

    text = str(e)
    if re.search(r"version|deserializ|Unsupported StableHLO|bytecode", text, re.I) and re.search(
        r"stablehlo|vhlo", text, re.I
    ):
        return (
            f"{name}: TensorFlow {tf.__version__} cannot read the StableHLO that JAX "
            f"{jax.__version__} serializes ({_first_line(text)}); install a TensorFlow "
            f"release from the same months as this JAX, or a JAX release from this "
            f"TensorFlow's"
        )
    ops = sorted(set(re.findall(r"'((?:stablehlo|chlo|mhlo|tf|tfl)\.[A-Za-z_0-9]+)'", text)))
    if ops:
        return (
            f"{name}: the LiteRT converter cannot lower {', '.join(ops)} to builtin ops "
            f"({_first_line(text)})"
        )
    return f"{name}: the LiteRT converter failed: {_first_line(text)}"


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()] or [
        ln.strip() for ln in text.splitlines() if ln.strip()
    ]
    return (lines[0] if lines else "no message")[:300]


def _check_loads(flat: bytes, name: str) -> None:
    """Load and run the flatbuffer in a child process: for some int8 graphs the LiteRT runtime
    aborts the whole process (a failed check in a kernel's Prepare) instead of raising."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(flat)
    code = (
        "import sys, numpy as np\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()\n"
        "d = it.get_input_details()[0]\n"
        "it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype'])); it.invoke()\n"
    )
    try:
        r = subprocess.run(
            [sys.executable, "-c", code, f.name],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        lines = [
            ln
            for ln in r.stderr.strip().splitlines()
            if ln.strip() and not ln.startswith(("INFO:", "WARNING: All log"))
        ]
        why = (
            lines[-1][:300]
            if lines
            else f"the runtime aborted the process (signal {-r.returncode})"
            if r.returncode < 0
            else f"exit status {r.returncode}"
        )
        raise RuntimeError(
            f"{name}: the int8 LiteRT file does not run in the LiteRT runtime ({why}); export it "
            f"as float32 or float16, or quantise the ONNX export (--format onnx --quantize "
            f"int8)"
        )


def litert_runner(path: str, *, threads: int | None = None):
    """``(run, input_shape)`` for a .tflite file: ``run(x)`` takes float32 NHWC images and
    returns float32 logits, quantising and dequantising where the file's I/O is integer."""
    Interpreter = _interpreter_cls()
    with _NativeStderr():
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def run(x):
        x = np.asarray(x, np.float32)
        if inp["dtype"] in (np.int8, np.uint8):  # integer I/O: quantise with the file's scale
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, np.float32)

    return run, [int(v) for v in inp["shape"]]
