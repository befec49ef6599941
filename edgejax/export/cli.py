"""``python -m edgejax.export``: the command line over the exporters."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np

from .common import load_model, relative_error
from .graph import WINOGRAD_MIN_CHANNELS
from .onnx import export_onnx, run_onnx
from .stablehlo import export_stablehlo, load_stablehlo

FORMATS = ("onnx", "stablehlo", "litert")
# Relative error an exported float file may show against JAX on a random batch.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgejax.export",
        description="Export an edgejax model to ONNX, StableHLO or LiteRT (float or int8).",
    )
    from edgejax.infer import add_weights_args

    add_weights_args(p, exported_files=False)
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS + ("tflite",),
        help="onnx, stablehlo or litert (tflite: the same as litert)",
    )
    p.add_argument("--out", required=True, help="output file")
    b = p.add_mutually_exclusive_group()
    b.add_argument(
        "--batch-size",
        "--batch",
        dest="batch",
        type=int,
        default=1,
        help="fixed batch size (default 1), as validate and predict take it",
    )
    b.add_argument(
        "--dynamic-batch", action="store_true", help="symbolic batch dimension (onnx, stablehlo)"
    )
    p.add_argument(
        "--resolution",
        "--image-size",
        dest="resolution",
        type=int,
        default=None,
        help="input height = width (default: the run's eval size for a checkpoint, "
        "else the model's default input size)",
    )
    p.add_argument("--deploy", action="store_true", help="fuse (RepVGG reparam + BN folding)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="litert: float16 weights (half the file)",
    )
    q = p.add_argument_group("int8 post-training quantization (onnx, litert)")
    q.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="full int8: weights per channel, activations from calibration images "
        "(implies --deploy)",
    )
    q.add_argument(
        "--calibration",
        metavar="DATA",
        help="calibration images: an ImageFolder root, a prepared dataset, 'digits', "
        "tfds:NAME or a folder of images",
    )
    q.add_argument("--calibration-split", default="train", help="split of DATA (default train)")
    q.add_argument(
        "--calibration-samples", type=int, default=512, help="images drawn from DATA (default 512)"
    )
    q.add_argument(
        "--calibration-method",
        choices=("percentile", "minmax", "entropy"),
        default=None,
        help="activation ranges from the 0.01th-99.99th percentiles "
        "(default), min/max, or (onnx only) entropy",
    )
    q.add_argument(
        "--no-fuse",
        action="store_true",
        help="quantise the unfused model (RepVGG's branches and BatchNorms kept: "
        "narrower value ranges per tensor, a slower file)",
    )
    q.add_argument(
        "--int8-io",
        action="store_true",
        help="litert: int8 input and output tensors too (default float32)",
    )
    q.add_argument(
        "--full-integer",
        action="store_true",
        help="litert: every op int8, for integer-only runtimes (microcontrollers, NPUs); by "
        "default attention's matmuls and softmax, GELU, standalone ReLUs and the "
        "normalisations' statistics stay float32, which XNNPACK (LiteRT's CPU runtime) cannot "
        "run in int8",
    )
    p.add_argument(
        "--winograd",
        action="store_true",
        help="ONNX: write stride-1 3x3 convs with >= %d channels as Winograd "
        "F(4x4,3x3) (maps a multiple of 4) or F(2x2,3x3) (even maps) MatMuls "
        "(faster in onnxruntime on CPU; not for GPU runtimes)" % WINOGRAD_MIN_CHANNELS,
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="ONNX: keep the graph in the models' NHWC layout, a Transpose before and "
        "after each conv (by default the layout pass keeps maps NCHW from conv to conv "
        "and writes dense layers on maps as 1x1 convs, which onnxruntime runs faster; "
        "same values)",
    )
    p.add_argument("--opset", type=int, default=21, help="ONNX opset")
    p.add_argument(
        "--no-verify", action="store_true", help="skip running the exported file against JAX"
    )
    return p


def _check_flags(args) -> None:
    for flag in ("winograd", "channels_last"):
        if getattr(args, flag) and args.format != "onnx":
            raise ValueError(f"--{flag.replace('_', '-')} applies to --format onnx only")
    if args.format == "litert" and args.dynamic_batch:
        raise ValueError(
            "--dynamic-batch applies to onnx and stablehlo; LiteRT files take a fixed --batch"
        )
    if args.dtype != "float32" and args.format != "litert":
        raise ValueError("--dtype float16 applies to --format litert only")
    if not args.dynamic_batch and args.batch < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch}")
    if args.quantize:
        if args.format == "stablehlo":
            raise ValueError("--quantize int8 applies to --format onnx or litert")
        if not args.calibration:
            raise ValueError(
                "--quantize int8 needs --calibration DATA (images the model will "
                "see, e.g. its training set)"
            )
        if args.dtype != "float32":
            raise ValueError("--quantize int8 starts from float32 weights: drop --dtype")
        if args.no_fuse and args.deploy:
            raise ValueError("--no-fuse and --deploy contradict each other")
        if args.winograd:
            raise ValueError(
                "--winograd and --quantize int8 do not combine (the Winograd "
                "transforms widen the value ranges int8 must cover)"
            )
    else:
        for flag in ("calibration", "int8_io", "no_fuse", "calibration_method", "full_integer"):
            if getattr(args, flag):
                raise ValueError(f"--{flag.replace('_', '-')} needs --quantize int8")
    for flag in ("int8_io", "full_integer"):
        if getattr(args, flag) and args.format != "litert":
            raise ValueError(f"--{flag.replace('_', '-')} applies to --format litert only")
    if args.format == "litert" and args.calibration_method == "entropy":
        raise ValueError("LiteRT calibration takes percentile or minmax, not entropy")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.format = "litert" if args.format == "tflite" else args.format
    if args.format == "litert" or args.quantize:  # TensorFlow's start-up banners, before import
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from ..registry import model_info
        from ..bench import validate_resolution, _abstract_model
        from ..infer import eval_settings

        info = model_info(args.model)
        name = info["name"]
        _check_flags(args)
        if args.checkpoint and not os.path.exists(args.checkpoint):
            raise FileNotFoundError(f"checkpoint directory not found: {args.checkpoint}")
        resolution = (
            args.resolution or eval_settings(name, checkpoint=args.checkpoint)["image_size"]
        )
        validate_resolution(_abstract_model(name), resolution, name=name)  # before any compile
        cal = None
        if args.quantize:  # the images first: a bad DATA fails before anything compiles
            from .quantize import calibration_images

            cal = calibration_images(
                name,
                args.calibration,
                samples=args.calibration_samples,
                split=args.calibration_split,
                checkpoint=args.checkpoint,
                image_size=resolution,
            )
            if not args.deploy and not args.no_fuse:
                print(
                    "--quantize int8: exporting the fused model (BatchNorms folded, RepVGG "
                    "re-parameterised), as --deploy"
                )
        model = load_model(
            name,
            checkpoint=args.checkpoint,
            pretrained=args.pretrained,
            deploy=args.deploy or bool(args.quantize and not args.no_fuse),
        )
        kw = dict(resolution=resolution, batch_size=args.batch)
        if args.format == "onnx":
            kw["dynamic_batch"] = args.dynamic_batch
            if args.quantize:
                import tempfile
                from .quantize import quantize_onnx

                with tempfile.TemporaryDirectory() as tmp:
                    fp32 = export_onnx(
                        model,
                        os.path.join(tmp, "fp32.onnx"),
                        opset=args.opset,
                        name=name,
                        channels_first=not args.channels_last,
                        **kw,
                    )
                    quantize_onnx(
                        fp32,
                        args.out,
                        cal,
                        name=name,
                        method=args.calibration_method or "percentile",
                    )
            else:
                export_onnx(
                    model,
                    args.out,
                    opset=args.opset,
                    name=name,
                    winograd=args.winograd,
                    channels_first=not args.channels_last,
                    **kw,
                )
        elif args.format == "litert":
            from .litert import export_litert

            export_litert(
                model,
                args.out,
                dtype=args.dtype,
                quantize=args.quantize,
                calibration=cal,
                int8_io=args.int8_io,
                calibration_method=args.calibration_method or "percentile",
                full_integer=args.full_integer,
                name=name,
                **kw,
            )
        else:
            export_stablehlo(model, args.out, dynamic_batch=args.dynamic_batch, **kw)
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        NotImplementedError,
        ImportError,
        RuntimeError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from ..infer import write_transform

    t = eval_settings(name, checkpoint=args.checkpoint, image_size=resolution)
    write_transform(args.out, t)  # validate / predict read the file with the same transform
    size = os.path.getsize(args.out) / 2**20
    kind = args.quantize or args.dtype
    io = "int8" if args.int8_io else "float32"
    print(
        f"wrote {args.out} ({args.format} {kind}, {size:.1f} MiB, input "
        f"[{'B' if args.dynamic_batch else args.batch}, {resolution}, {resolution}, "
        f"{model.in_chans}] {io} NHWC)"
    )
    if args.no_verify:
        return 0
    return _verify(args, model, resolution, cal)


def _verify(args, model, resolution: int, cal) -> int:
    """Float files: a random batch against JAX, within TOLERANCE. int8 files: the calibration
    images against JAX, reported (top-1 agreement and relative error), not judged: what int8
    costs in accuracy is for ``edgejax.validate`` on labelled data to say."""
    import jax
    from flax import nnx

    b = 2 if args.dynamic_batch else args.batch
    if cal is not None:
        n = max(b, min(64, len(cal)) // b * b)
        x = cal[:n]
    else:
        x = np.random.default_rng(0).standard_normal(
            (b, resolution, resolution, model.in_chans), dtype=np.float32
        )
    graphdef, state = nnx.split(model)
    ref = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x))
    if args.format == "onnx":
        from .onnx import onnx_session

        sess = onnx_session(args.out)
        run = lambda c: run_onnx(sess, c)  # noqa: E731
    elif args.format == "litert":
        from .litert import litert_runner

        run, _ = litert_runner(args.out)
    else:
        exp = load_stablehlo(args.out)
        run = lambda c: np.asarray(exp.call(c))  # noqa: E731
    got = np.concatenate([run(x[i : i + b]) for i in range(0, len(x), b)])
    err = relative_error(got, ref)
    if cal is not None:
        agree = float(np.mean(got.argmax(-1) == ref.argmax(-1))) * 100
        print(
            f"int8 against JAX on {len(x)} calibration images: top-1 agreement "
            f"{agree:.1f}%, relative error {err:.2e}"
        )
        return 0
    print(f"verified against JAX on a random batch of {b}: relative error {err:.2e}")
    if err > TOLERANCE[args.dtype]:
        print(f"error: relative error above {TOLERANCE[args.dtype]:g}", file=sys.stderr)
        return 1
    return 0
