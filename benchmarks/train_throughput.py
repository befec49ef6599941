"""Training throughput of edgejax's jitted train step, per model: img/s, compile time, peak memory.

    python benchmarks/train_throughput.py                       # the nine study models, batch 256,
                                                                # 224 px, bf16, on every local device
    python benchmarks/train_throughput.py --models repvgg_a0,mobilenetv3_small_050 \
        --batch 8 --size 64 --steps 3 --dtype float32           # a CPU smoke run

The step is the production one (``edgejax.train.build``): SGD + momentum, cosine schedule, full
forward/backward/update, BatchNorm statistics, a random uint8 batch already on the device
(normalised inside the step), so the figure excludes input decoding. Prints one table.
"""
from __future__ import annotations

import argparse
import time

STUDY_MODELS = ("efficientnetv2_s", "tf_efficientnetv2_s", "convnext_tiny", "mobilevitv2_050",
                "mobilevitv2_075", "mobilevitv2_100", "mobilenetv3_large_100", "tiny_vit_21m_224",
                "repvgg_a2")


def bench(name: str, batch: int, size: int, steps: int, dtype: str, warmup: int = 2) -> dict:
    import jax
    import numpy as np

    import edgejax
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
    r = build(c, num_classes=1000)
    rng = np.random.default_rng(0)
    b = r.put_batch({"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
                     "label": rng.integers(0, 1000, batch).astype(np.int32)})
    t0 = time.perf_counter()
    compiled = r.train_step.lower(r.state, b).compile()
    compile_s = time.perf_counter() - t0
    state = r.state
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
    if "peak_bytes_in_use" in stats:
        peak = stats["peak_bytes_in_use"] / 2**30
    return {"model": name, "params_m": edgejax.model_info(name)["num_params"] / 1e6,
            "img_s": steps * batch / dt, "step_ms": 1000 * dt / steps, "compile_s": compile_s,
            "peak_gib": peak, "loss": float(m["loss"])}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(STUDY_MODELS))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    args = p.parse_args()

    import jax

    import edgejax
    dev = jax.devices()
    print(f"# {len(dev)} x {dev[0].device_kind} ({jax.default_backend()}), batch {args.batch}, "
          f"{args.size} px, {args.dtype}, jax {jax.__version__}", flush=True)
    rows = []
    known = set(edgejax.list_models())
    for name in args.models.split(","):
        if name not in known:
            rows.append({"model": name, "error": "not registered"})
            continue
        try:
            rows.append(bench(name, args.batch, args.size, args.steps, args.dtype, args.warmup))
        except Exception as e:  # one model failing must not hide the others
            rows.append({"model": name, "error": f"{type(e).__name__}: {str(e)[:80]}"})
        print(f"# done {name}", flush=True)
    print(f"\n| model | params (M) | img/s | step (ms) | compile (s) | peak mem (GiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | - | - | - | - | {r['error']} |")
            continue
        peak = "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"| {r['model']} | {r['params_m']:.2f} | {r['img_s']:.1f} | {r['step_ms']:.1f} | "
              f"{r['compile_s']:.1f} | {peak} |")


if __name__ == "__main__":
    main()
