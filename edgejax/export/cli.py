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

FORMATS = ("onnx", "stablehlo")

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
        from ..registry import model_info
        from ..bench import validate_resolution, _abstract_model
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
