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
ONNX graphs go through the layout pass (``edgejax.export.layout``: maps stay NCHW from conv to
conv, dense layers on maps become 1x1 convs; same values) unless ``--channels-last``.
"""

from __future__ import annotations

from .common import load_model, relative_error
from .graph import WINOGRAD_MIN_CHANNELS, WINOGRAD_TILES, winograd_convs
from .onnx import export_onnx, onnx_session, run_onnx
from .stablehlo import export_stablehlo, load_stablehlo
from .litert import LITERT_FLOAT_OPS, export_litert, litert_runner
from .quantize import calibration_images, quantize_onnx
from .cli import FORMATS, main

__all__ = [
    "load_model",
    "export_onnx",
    "export_stablehlo",
    "load_stablehlo",
    "run_onnx",
    "onnx_session",
    "relative_error",
    "winograd_convs",
    "main",
    "FORMATS",
    "WINOGRAD_MIN_CHANNELS",
    "WINOGRAD_TILES",
    "export_litert",
    "litert_runner",
    "LITERT_FLOAT_OPS",
    "calibration_images",
    "quantize_onnx",
]
