"""Training throughput of edgejax's jitted train step, per model: img/s, compile time, peak memory.

    python benchmarks/train_throughput.py                       # the nine study models, batch 256,
                                                                # 224 px, bf16, on every local device
    python benchmarks/train_throughput.py --models repvgg_a0,mobilenetv3_small_050 \
        --batch 8 --size 64 --steps 3 --dtype float32           # a CPU smoke run
    python benchmarks/train_throughput.py --baseline ../shared/bench/timm_baseline.py \
        --torch-python /path/to/torch/python                 # + timm in the same run, ratios

With ``--baseline``, timm's own benchmark (``../shared/bench/timm_baseline.py``: eager bf16 autocast,
channels-last, SGD, label smoothing; torch.compile for the models it lists) runs in a subprocess
on the same machine right after edgejax, at the same batch and resolution, and the table gains
the ratios edgejax / timm eager and edgejax / timm compiled.

The step is the production one (``edgejax.train.build``): SGD + momentum, cosine schedule, full
forward/backward/update, BatchNorm statistics, a random uint8 batch already on the device
(normalised inside the step), so the figure excludes input decoding. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import traceback

from edgejax.layers.constants import STUDY_MODELS  # noqa: E402


def prepare(name: str, batch: int, size: int, dtype: str, teacher: str | None = None):
    """Build the production train step for ``name`` and compile it (no step is run).

    ``teacher``: distil from this model (random weights, at its own input size, in eval mode
    inside the step: the cost of online distillation). Returns ``(step, state, batch on device,
    compile seconds)``; ``step(state, batch)`` is the compiled program. The same program every
    time for the same arguments, so a persistent compilation cache warmed by one process (see
    ``benchmarks/gpu_suite.py --precompile``) serves the next."""
    import jax
    import numpy as np

    from edgejax.train import base_config, build

    c = base_config()
    c.model.name = name
    c.data.image_size = size
    c.global_batch_size = batch
    c.dtype = dtype
    c.optimizer.name = "sgd"
    c.optimizer.weight_decay = 5e-5
    n = jax.device_count()
    if batch % n:
        raise ValueError(f"--batch {batch} must be divisible by the {n} devices")
    t = None
    if teacher:
        from edgejax.distill import random_teacher

        c.distill.teacher, c.distill.pretrained = teacher, "random"  # weights given below
        t = random_teacher(teacher, 1000, dtype=jax.numpy.bfloat16 if dtype == "bfloat16" else None)
    r = build(c, num_classes=1000, teacher=t)
    rng = np.random.default_rng(0)
    b = r.put_batch(
        {
            "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            "label": rng.integers(0, 1000, batch).astype(np.int32),
        }
    )
    t0 = time.perf_counter()
    args = (r.state, b) if t is None else (r.state, b, r.teacher_weights)
    compiled = r.train_step.lower(*args).compile()
    step = compiled
    if t is not None:

        def step(s, x):
            return compiled(s, x, r.teacher_weights)

        step.memory_analysis = compiled.memory_analysis
    return step, r.state, b, time.perf_counter() - t0


def bench(
    name: str,
    batch: int,
    size: int,
    steps: int,
    dtype: str,
    warmup: int = 2,
    teacher: str | None = None,
) -> dict:
    import jax

    import edgejax

    compiled, state, b, compile_s = prepare(name, batch, size, dtype, teacher)
    for _ in range(warmup):
        state, m = compiled(state, b)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, b)
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    peak = None
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:  # the process's high-water mark, all models so far
        peak = stats["peak_bytes_in_use"] / 2**30
    try:  # this step's own footprint, as XLA planned it (not every backend reports it)
        mem = compiled.memory_analysis()
        est = (
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        ) / 2**30
    except Exception:  # noqa: BLE001
        est = None
    return {
        "model": name,
        "teacher": teacher,
        "params_m": edgejax.model_info(name)["num_params"] / 1e6,
        "img_s": steps * batch / dt,
        "step_ms": 1000 * dt / steps,
        "compile_s": compile_s,
        "mem_gib": est,
        "peak_gib": peak,
        "loss": float(m["loss"]),
    }


def main():
    from edgejax.bench import add_torch_python_flag

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(STUDY_MODELS))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--resolution", "--size", dest="size", type=int, default=224)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument(
        "--baseline",
        default=None,
        help="path of ../shared/bench/timm_baseline.py to run beside, for ratios",
    )
    add_torch_python_flag(p)
    p.add_argument(
        "--baseline-compile",
        default=None,
        help="models timm also runs under torch.compile (default: the baseline's own)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        help="distil every model from this one (random weights, its own input size): "
        "the img/s of online distillation, student and teacher in one step",
    )
    p.add_argument("--json", default=None, help="write the records here (one JSON list)")
    args = p.parse_args()
    if args.teacher and args.baseline:
        p.error("--teacher times distillation, which timm's baseline does not run: drop --baseline")

    import jax

    import edgejax

    dev = jax.devices()
    print(
        f"# {len(dev)} x {dev[0].device_kind} ({jax.default_backend()}), batch {args.batch}, "
        f"{args.size} px, {args.dtype}, jax {jax.__version__}"
        + (
            f"; distilled from {args.teacher} (random weights, its own input size)"
            if args.teacher
            else ""
        ),
        flush=True,
    )
    rows = []
    known = set(edgejax.list_models())
    for name in args.models.split(","):
        if name not in known:
            rows.append({"model": name, "error": "not registered"})
            continue
        try:
            rows.append(
                bench(
                    name,
                    args.batch,
                    args.size,
                    args.steps,
                    args.dtype,
                    args.warmup,
                    teacher=args.teacher,
                )
            )
        except Exception as e:  # one model failing must not hide the others
            traceback.print_exc()
            rows.append({"model": name, "error": f"{type(e).__name__}: {str(e)[:80]}"})
        print(f"# done {name}: {json.dumps(rows[-1])}", flush=True)
        if args.json:  # record by record, so a run cut short leaves what it measured
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    eager, compiled = (
        run_baseline(args, [r["model"] for r in rows if "error" not in r])
        if args.baseline
        else ({}, {})
    )
    if args.json and args.baseline:
        for r in rows:
            r["timm_eager_img_s"], r["timm_compiled_img_s"] = (
                eager.get(r["model"]),
                compiled.get(r["model"]),
            )
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    cols = (
        "| model | params (M) | img/s | step (ms) | compile (s) | XLA mem (GiB) |"
        " process peak (GiB) |"
    )
    if args.baseline:
        cols += " timm eager img/s | ratio | timm compiled img/s | ratio |"
    print("\n" + cols)
    print("|---" * (cols.count("|") - 1) + "|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | - | - | - | - | - | {r['error']} |")
            continue
        est, peak = ("n/a" if v is None else f"{v:.2f}" for v in (r["mem_gib"], r["peak_gib"]))
        line = (
            f"| {r['model']} | {r['params_m']:.2f} | {r['img_s']:.1f} | {r['step_ms']:.1f} | "
            f"{r['compile_s']:.1f} | {est} | {peak} |"
        )
        if args.baseline:
            for ref in (eager.get(r["model"]), compiled.get(r["model"])):
                line += f" {ref:.1f} | {r['img_s'] / ref:.2f}x |" if ref else " - | - |"
        print(line)


def run_baseline(args, models: list[str]) -> tuple[dict, dict]:
    """Run timm_baseline.py at the same batch / resolution; returns train img/s per model, eager
    and torch.compile'd. Models timm does not know (tf_efficientnetv2_s is known) come back empty."""
    cmd = [
        args.torch_python,
        args.baseline,
        "--batch",
        str(args.batch),
        "--res",
        str(args.size),
        "--steps",
        str(args.steps),
        "--models",
        ",".join(models),
        "--budget-s",
        "100000",
    ]
    if args.baseline_compile is not None:
        cmd += ["--compile", args.baseline_compile]
    print("# timm baseline: " + " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            print("# timm: " + line, flush=True)
    if p.returncode:
        print(f"# timm baseline failed ({p.returncode}): {p.stderr[-1500:]}", flush=True)
    eager, compiled = parse_baseline(p.stdout.splitlines())
    return (
        {m: r["train_img_s"] for m, r in eager.items()},
        {m: r["train_img_s"] for m, r in compiled.items()},
    )


def parse_baseline(lines) -> tuple[dict, dict]:
    """timm_baseline.py's JSON lines -> ``(eager, compiled)``: its record per model (train img/s,
    inference img/s and batch-1 latency, re-parameterised RepVGG figures), without torch.compile
    and with. Other lines (and lines cut short) are skipped."""
    eager, compiled = {}, {}
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "model" in rec and "train_img_s" in rec:
            (compiled if rec.get("compiled") else eager)[rec["model"]] = rec
    return eager, compiled


if __name__ == "__main__":
    main()
