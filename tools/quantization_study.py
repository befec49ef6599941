"""What export and int8 quantization cost in accuracy, measured: trained runs exported to ONNX
and LiteRT, float32 and int8, each validated on the same held-out images with ``edgejax.validate``.

    python tools/make_subset.py ../shared/data/cifar10 runs/data/cifar10_10k \\
        --train 1000 --val 100 --test 200 --seed 0
    for m in mobilenetv3_large_100 repvgg_a0 convnext_atto; do
        python -m edgejax.train --config configs/cifar10_deploy.py:$m --workdir runs/deploy/$m
    done
    python tools/quantization_study.py --runs runs/deploy --out runs/deploy/files \\
        --docs docs/results/quantization.md

Every file is written by ``python -m edgejax.export`` (the same flags a user gives); int8 files
are calibrated on ``--calibration-samples`` images of the training split, and every format is
read through the same eval transform (``edgejax.infer.Classifier``), so the rows compare.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# (label, file suffix, export flags); None: the checkpoint itself in JAX
FORMS = [
    ("JAX float32", None, None),
    ("ONNX float32", "fp32.onnx", ["--format", "onnx", "--deploy"]),
    ("ONNX int8", "int8.onnx", ["--format", "onnx", "--quantize", "int8"]),
    (
        "ONNX int8, min/max ranges",
        "int8_minmax.onnx",
        ["--format", "onnx", "--quantize", "int8", "--calibration-method", "minmax"],
    ),
    ("LiteRT float32", "fp32.tflite", ["--format", "litert", "--deploy"]),
    ("LiteRT int8", "int8.tflite", ["--format", "litert", "--quantize", "int8"]),
    (
        "LiteRT int8, min/max ranges",
        "int8_minmax.tflite",
        ["--format", "litert", "--quantize", "int8", "--calibration-method", "minmax"],
    ),
    (
        "LiteRT int8, full integer",
        "int8_full.tflite",
        ["--format", "litert", "--quantize", "int8", "--full-integer"],
    ),
]
EXTRA = {  # a model whose fused form quantises badly gets the unfused form measured too
    "repvgg": [
        (
            "ONNX int8, unfused",
            "int8_unfused.onnx",
            ["--format", "onnx", "--quantize", "int8", "--no-fuse"],
        )
    ],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/deploy", help="folder of training workdirs")
    ap.add_argument("--models", default="mobilenetv3_large_100,repvgg_a0,convnext_atto")
    ap.add_argument("--data", default="runs/data/cifar10_10k")
    ap.add_argument("--split", default="test")
    ap.add_argument("--calibration-samples", type=int, default=512)
    ap.add_argument("--out", default="runs/deploy/files", help="where the exported files go")
    ap.add_argument("--docs", default=None, help="write the markdown table here")
    a = ap.parse_args(argv)
    from edgejax.bench import cpu_flags
    from edgejax.export import main as export
    from edgejax.infer import Classifier
    from edgejax.validate import validate

    os.makedirs(a.out, exist_ok=True)
    results = {}
    for model in a.models.split(","):
        ckpt = os.path.join(a.runs, model)
        rows = results[model] = []
        forms = FORMS + next((v for k, v in EXTRA.items() if model.startswith(k)), [])
        for label, suffix, flags in forms:
            t0 = time.time()
            if suffix is None:
                clf = Classifier(model, checkpoint=ckpt)
                size = None
            else:
                path = os.path.join(a.out, f"{model}_{suffix}")
                cal = (
                    ["--calibration", a.data, "--calibration-samples", str(a.calibration_samples)]
                    if "--quantize" in flags
                    else []
                )
                buf, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
                    rc = export(
                        ["--model", model, "--checkpoint", ckpt, "--out", path, *flags, *cal]
                    )
                if rc != 0:
                    why = next(
                        (ln for ln in err.getvalue().splitlines() if ln.startswith("error:")),
                        f"export exited {rc}",
                    )
                    rows.append(dict(form=label, error=why.removeprefix("error: ")))
                    print(f"{model} {label}: {why}", file=sys.stderr)
                    continue
                size = os.path.getsize(path) / 2**20
                src = "onnx" if suffix.endswith(".onnx") else "tflite"
                clf = Classifier(model, **{src: path})  # with the run's transform, recorded
                # by export in (or beside) the file
            r = validate(clf, a.data, split=a.split, batch_size=100)
            rows.append(
                dict(
                    form=label,
                    top1=r["top1"],
                    top5=r["top5"],
                    loss=r["loss"],
                    count=r["count"],
                    mb=size,
                    seconds=time.time() - t0,
                )
            )
            print(
                f"{model} {label}: top-1 {r['top1']:.2f} top-5 {r['top5']:.2f} "
                f"({r['count']} images, {size or 0:.1f} MB)",
                file=sys.stderr,
                flush=True,
            )
    env = dict(
        date=time.strftime("%Y-%m-%d"),
        cpu_flags=cpu_flags(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
        data=a.data,
        split=a.split,
        calibration_samples=a.calibration_samples,
    )
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(dict(env=env, results=results), f, indent=1)
    table = _table(results)
    print(table)
    if a.docs:
        _write_docs(a, env, results, table)
    return 0


def _table(results: dict) -> str:
    lines = [
        "| model | form | top-1 | vs JAX float32 | top-5 | loss | MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, rows in results.items():
        base = next((r["top1"] for r in rows if r["form"] == "JAX float32"), None)
        for r in rows:
            if "error" in r:
                lines.append(f"| {model} | {r['form']} | not available: {r['error']} | | | | |")
                continue
            d = "" if base is None or r["form"] == "JAX float32" else f"{r['top1'] - base:+.2f}"
            mb = "" if r["mb"] is None else f"{r['mb']:.1f}"
            lines.append(
                f"| {model} | {r['form']} | {r['top1']:.2f} | {d} | {r['top5']:.2f} | "
                f"{r['loss']:.4f} | {mb} |"
            )
    return "\n".join(lines)


def _write_docs(a, env, results, table) -> None:
    text = f"""# What export and int8 quantization cost in accuracy

Measured {env["date"]} on a {env["cpus"]}-CPU {env["machine"]} machine (CPU flags:
{" ".join(env["cpu_flags"]) or "unknown"}). Models trained from scratch on a 10,000-image CIFAR-10
subset at 32 px (`configs/cifar10_deploy.py`, 30 epochs), then exported by `python -m
edgejax.export` from their checkpoints and validated with `edgejax.validate` on the same
{results and next(iter(results.values()))[0].get("count", 0)} held-out test images (split
`{env["split"]}` of `{env["data"]}`). int8: full-integer post-training quantization from
{env["calibration_samples"]} training images (ONNX: onnxruntime static QDQ, per-channel int8
weights, int8 activations; LiteRT: the converter's quantizer, per-channel weights, with attention's
matmuls and softmax, GELU and the normalisations' statistics in float32 unless the row says full
integer (`--full-integer`)).
Float files are exported fused (`--deploy`: BatchNorms folded, RepVGG re-parameterised), as int8
files are unless the row says unfused (`--no-fuse`). int8 clips activation ranges at the
0.01th / 99.99th percentiles unless the row says min/max (`--calibration-method minmax`).

Command (after the training commands in `tools/quantization_study.py`):

    python tools/quantization_study.py --models {a.models} --runs {a.runs} --out {a.out} \\
        --docs {a.docs}

{table}
"""
    with open(a.docs, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
