"""int8 post-training quantization: calibration images from any edgejax data source, and ONNX
static quantization with onnxruntime's quantizer (QDQ, per-channel weights). LiteRT's int8 is
``export_litert(..., quantize="int8", calibration=...)``.

    from edgejax.export import calibration_images, export_onnx, quantize_onnx
    cal = calibration_images("repvgg_a0", "data/cifar10", samples=512, image_size=32)
    export_onnx(fused_model, "m.onnx", resolution=32)
    quantize_onnx("m.onnx", "m.int8.onnx", cal)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile

import numpy as np

__all__ = ["calibration_images", "quantize_onnx", "MIN_CALIBRATION_SAMPLES", "CALIBRATION_METHODS"]

# How activation ranges come from the calibration images. ``percentile`` (the default) clips each
# tensor's range at the 99.99th percentile of its absolute values: min/max ranges are set by a
# few outliers and leave the bulk of the values a handful of int8 steps (a MobileNetV3-Large
# trained on CIFAR-10 lost 18 points of top-1 with min/max ranges and half a point with
# percentile ones: docs/results/quantization.md).
CALIBRATION_METHODS = ("percentile", "minmax", "entropy")
PERCENTILE = 99.99

# Fewer images than this give activation ranges from a handful of pictures: the int8 model's
# accuracy then depends on which ones.
MIN_CALIBRATION_SAMPLES = 16


def calibration_images(
    model: str,
    data: str,
    *,
    samples: int = 512,
    split: str = "train",
    checkpoint: str | None = None,
    image_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``samples`` images drawn (seeded, without replacement) from ``data``, through the model's
    eval transform and normalisation -> float32 [samples, H, W, 3], as the exported file takes.

    ``data``: any edgejax source (ImageFolder root, prepared ArrayRecord folder, ``digits``,
    ``tfds:NAME``; ``split`` picks the split) or a folder of images with no class folders. The
    transform is the run's for a ``checkpoint``, else the model's (``infer.eval_settings``).
    """
    from ..data import transforms as T
    from ..infer import eval_settings

    if (
        isinstance(samples, bool)
        or not isinstance(samples, int)
        or samples < MIN_CALIBRATION_SAMPLES
    ):
        raise ValueError(
            f"calibration needs at least {MIN_CALIBRATION_SAMPLES} images, asked for {samples!r}"
        )
    t = eval_settings(
        model,
        checkpoint=checkpoint,
        image_size=image_size,
        crop_pct=crop_pct,
        interpolation=interpolation,
    )
    read = _reader(str(data), split)
    n = len(read)
    if n < samples:
        raise ValueError(
            f"{data} (split {split}) has {n} images, fewer than the {samples} "
            f"calibration samples asked for: give more images or fewer samples "
            f"(--calibration-samples, at least {MIN_CALIBRATION_SAMPLES})"
        )
    order = np.random.default_rng(seed).permutation(n)
    out, bad = [], 0
    for i in order:
        try:
            img = T.center_crop_resize(
                read(int(i)), t["image_size"], t["crop_pct"], t["interpolation"]
            )
        except T.CorruptImageError:
            bad += 1
            continue
        out.append(img)
        if len(out) == samples:
            break
    if len(out) < samples:
        raise ValueError(
            f"{data}: only {len(out)} of its {n} images are readable ({bad} "
            f"corrupt), fewer than the {samples} calibration samples asked for"
        )
    x = np.stack(out).astype(np.float32)
    mean = np.asarray(t["mean"], np.float32) * 255.0
    std = np.asarray(t["std"], np.float32) * 255.0
    return (x - mean) / std


class _Reader:
    def __init__(self, get, n):
        self.get, self.n = get, n

    def __len__(self):
        return self.n

    def __call__(self, i: int) -> bytes:
        return self.get(i)


def _reader(data: str, split: str) -> _Reader:
    """index -> encoded image bytes, over an edgejax source or a plain folder of images."""
    from ..data import build_source
    from ..data.sources import DatasetError
    from ..train.config import resolve_dataset

    try:
        src, _ = build_source(resolve_dataset(data), split)
    except DatasetError:
        files = _flat_images(data)
        if not files:
            raise
        return _Reader(lambda i: open(files[i], "rb").read(), len(files))
    if len(src) == 0:
        raise ValueError(f"{data} (split {split}) holds no images to calibrate with")
    return _Reader(lambda i: src[i][0], len(src))


def _flat_images(data: str) -> list[str]:
    if not os.path.isdir(data):
        return []
    from ..data.sources import IMG_EXTENSIONS

    return sorted(
        os.path.join(data, f) for f in os.listdir(data) if f.lower().endswith(IMG_EXTENSIONS)
    )


class _AxisNote(logging.Filter):
    """onnxruntime's per-channel quantiser logs, on the root logger, "Axis 1 is out-of-range for
    weight ..." for each 1-D weight (the fused LayerNorm scales) and quantises it per tensor,
    which is what such a weight needs: a note that means nothing to a user."""

    def filter(self, record):
        return "is out-of-range for weight" not in record.getMessage()


@contextlib.contextmanager
def _without_axis_notes():
    root = logging.getLogger()
    note = _AxisNote()
    root.addFilter(note)
    try:
        yield
    finally:
        root.removeFilter(note)


def quantize_onnx(
    src: str,
    dst: str,
    calibration: np.ndarray,
    *,
    per_channel: bool = True,
    method: str = "percentile",
    name: str | None = None,
) -> str:
    """Statically quantise the float ONNX file ``src`` to int8 ``dst`` (QDQ format, signed int8
    activations and weights, per-channel weight scales; activation ranges from ``calibration``,
    normalised float32 images [N, H, W, C], by ``method``: see ``CALIBRATION_METHODS``);
    returns ``dst``.

    The graph is first shape-inferred and optimised by onnxruntime's ``quant_pre_process`` (as
    its docs advise). Input and output stay float32, so the file runs where the float one did.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise ImportError(
            f"ONNX quantization needs onnxruntime ({e}): pip install 'edgejax[export]'"
        ) from None
    from .onnx import onnx_session

    sess = onnx_session(src)
    inp = sess.get_inputs()[0]
    shape = inp.shape
    cal = np.asarray(calibration, np.float32)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    static = [d for d in shape[1:] if isinstance(d, int)]
    if cal.ndim != 4 or list(cal.shape[1:]) != static:
        raise ValueError(
            f"calibration images must be [N, {', '.join(map(str, shape[1:]))}], "
            f"got {list(cal.shape)}"
        )
    batch = shape[0] if isinstance(shape[0], int) else 1
    del sess

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(range(0, len(cal) - batch + 1, batch))

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {inp.name: cal[i : i + batch]}

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        try:  # its calibrators print their progress notes: kept out of the user's output
            with contextlib.redirect_stdout(io.StringIO()), _without_axis_notes():
                quantize_static(
                    pre,
                    dst,
                    Reader(),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=per_channel,
                    calibrate_method={
                        "minmax": CalibrationMethod.MinMax,
                        "percentile": CalibrationMethod.Percentile,
                        "entropy": CalibrationMethod.Entropy,
                    }[method],
                    extra_options={
                        "CalibTensorRangeSymmetric": False,
                        "CalibPercentile": PERCENTILE,
                        # onnxruntime 1.32 raises in this pass on these
                        # graphs (it compares a bias row as a scalar)
                        "QDQDisableWeightAdjustForInt32Bias": True,
                    },
                )
        except Exception as e:
            raise RuntimeError(
                f"{name or src}: onnxruntime could not quantise it: {type(e).__name__}: {e}"
            ) from None
    return str(dst)
