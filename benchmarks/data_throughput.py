"""Data pipeline throughput: decode + RandomResizedCrop(224) + flip, per core and end to end.

    PYTHONPATH=. python benchmarks/data_throughput.py [--data ../shared/data/imagenet-samples]
        [--torch-python PYTHON_WITH_TORCH] [--aug-batch 256] [--seconds 8]

Measures, on the 1,000 full-size ImageNet sample JPEGs (bytes preloaded in RAM):
1. single-thread img/s of edgejax's train transform on the original JPEGs and on the same images
   prepared at short side 256 (ArrayRecord, `python -m edgejax.data.prepare`);
2. the whole Grain pipeline (ArrayRecord source, shuffle, random_map, batch 64) with 1 thread,
   N threads and N multiprocessing workers;
3. timm's PIL train transform (`timm.data.create_transform(224, is_training=True,
   color_jitter=None)`, i.e. RandomResizedCrop + flip + ToTensor + Normalize) on the same bytes,
   in a subprocess of a Python with torch + timm (skipped with a note when absent);
4. the on-accelerator augmentation (`batch_augment`: RandAugment m9-mstd0.5-inc1, normalise,
   RandomErasing 0.25, Mixup 0.8 / CutMix 1.0, smoothing 0.1) per batch at 224 px, on whatever
   JAX backend is present.
Prints one table. Per-core rates divide by the cores used. On a shared machine the load average
(printed) inflates every number: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TIMM_SCRIPT = textwrap.dedent("""
    import io, json, sys, time
    import torch
    from PIL import Image
    from timm.data import create_transform
    torch.set_num_threads(1)
    files, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
    datas = [open(f, "rb").read() for f in files]
    tf = create_transform(224, is_training=True, color_jitter=None, interpolation="bilinear")
    def rate(datas):
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            for d in datas:
                tf(Image.open(io.BytesIO(d)).convert("RGB"))
                n += 1
                if time.perf_counter() - t0 > seconds:
                    break
        return n / (time.perf_counter() - t0), n / (time.process_time() - c0)
    out = {"original": rate(datas)}
    if len(sys.argv) > 3:
        out["ss256"] = rate([open(f, "rb").read() for f in json.loads(open(sys.argv[3]).read())])
    print(json.dumps(out))
""")


def _rate(fn, items, seconds):
    """-> (images per wall second, images per CPU second of this process)."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        for it in items:
            fn(it)
            n += 1
            if time.perf_counter() - t0 > seconds:
                return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def _pipeline_rate(source, seconds, **kw):
    from edgejax.data import make_train_loader

    loader = make_train_loader(
        source, global_batch_size=64, image_size=224, seed=0, process_index=0, process_count=1, **kw
    )
    it = iter(loader)
    next(it)  # start-up (worker spawn, first batches) not counted
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    for b in it:
        n += len(b["label"])
        if time.perf_counter() - t0 > seconds:
            break
    rate, cpu = n / (time.perf_counter() - t0), n / (time.process_time() - c0)
    it.close()
    # with mp workers the decoding CPU is spent in child processes: no CPU-time figure
    return rate, (cpu if not kw.get("workers") else float("nan"))


def _augment_cost(batch_size, reps):
    import jax
    import jax.numpy as jnp

    from edgejax.data import augment as A

    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.integers(0, 256, (batch_size, 224, 224, 3), np.uint8)),
        "label": jnp.asarray(rng.integers(0, 1000, batch_size)),
    }
    f = jax.jit(
        lambda k, b: A.batch_augment(
            k,
            b,
            num_classes=1000,
            randaugment=True,
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            label_smoothing=0.1,
            re_prob=0.25,
            dtype=jnp.bfloat16,
        )
    )
    t0 = time.perf_counter()
    jax.block_until_ready(f(jax.random.key(0), batch))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(reps):
        jax.block_until_ready(f(jax.random.key(i + 1), batch))
    return (time.perf_counter() - t0) / reps, compile_s, jax.default_backend()


def main():
    from edgejax.bench import add_torch_python_flag

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "imagenet-samples"))
    add_torch_python_flag(ap)
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement")
    ap.add_argument("--aug-batch", type=int, default=256)
    ap.add_argument("--aug-reps", type=int, default=2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    from edgejax.data import build_source, transforms as T
    from edgejax.data.prepare import prepare

    files = sorted(glob.glob(os.path.join(args.data, "*", "*.JPEG")))
    if not files:
        sys.exit(f"no JPEGs under {args.data} (../shared/data/imagenet-samples is needed)")
    originals = [open(f, "rb").read() for f in files]
    n_cores = os.cpu_count() or 1
    rows = []
    load = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        prepare(
            args.data,
            os.path.join(tmp, "ss256"),
            short_side=256,
            quality=90,
            workers=n_cores,
            progress=False,
        )
        prep_s = time.perf_counter() - t0
        source, _ = build_source(os.path.join(tmp, "ss256"), "train")
        prepared = [source[i][0] for i in range(len(source))]
        ss_files = os.path.join(tmp, "ss_files.json")
        ss_dir = os.path.join(tmp, "ss_jpegs")
        os.makedirs(ss_dir)
        paths = []
        for i, d in enumerate(prepared):
            p = os.path.join(ss_dir, f"{i}.jpg")
            Path(p).write_bytes(d)
            paths.append(p)
        Path(ss_files).write_text(json.dumps(paths))

        rng = np.random.default_rng(0)

        def train_tf(d):
            img = T.random_resized_crop(d, rng, 224)
            if rng.random() < 0.5:
                img = T.hflip(img)
            return img

        orig_rate, orig_cpu = _rate(train_tf, originals, args.seconds)
        ss_rate, ss_cpu = _rate(train_tf, prepared, args.seconds)
        eval_rate, eval_cpu = _rate(
            lambda d: T.center_crop_resize(d, 224, 0.875), prepared, args.seconds
        )
        rows.append(("decode+RRC+flip, original JPEGs, 1 thread", orig_rate, orig_rate, orig_cpu))
        rows.append(("decode+RRC+flip, short side 256, 1 thread", ss_rate, ss_rate, ss_cpu))
        rows.append(
            (
                "eval resize 256 + centre 224, short side 256, 1 thread",
                eval_rate,
                eval_rate,
                eval_cpu,
            )
        )

        p1, p1_cpu = _pipeline_rate(source, args.seconds, threads=1, workers=0)
        rows.append(("pipeline (ArrayRecord ss256, batch 64), 1 thread", p1, p1, p1_cpu))
        pn, pn_cpu = _pipeline_rate(source, args.seconds, threads=args.workers, workers=0)
        rows.append(
            (f"pipeline, {args.workers} threads", pn, pn / min(args.workers, n_cores), pn_cpu)
        )
        from absl import flags

        flags.FLAGS.mark_as_parsed()
        pm, _ = _pipeline_rate(source, args.seconds, threads=1, workers=args.workers)
        rows.append(
            (
                f"pipeline, {args.workers} mp workers x 1 thread",
                pm,
                pm / min(args.workers, n_cores),
                float("nan"),
            )
        )

        timm = None
        if os.path.exists(args.torch_python):
            r = subprocess.run(
                [
                    args.torch_python,
                    "-c",
                    TIMM_SCRIPT,
                    json.dumps(files),
                    str(args.seconds),
                    ss_files,
                ],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                timm = json.loads(r.stdout.strip().splitlines()[-1])
            else:
                note_timm = r.stderr.strip().splitlines()[-1:] or ["failed"]
                print(f"note: timm reference failed: {note_timm[0]}")
        else:
            print(f"note: {args.torch_python} not found: timm reference skipped")
        if timm:
            rows.append(
                (
                    "timm create_transform (PIL), original JPEGs, 1 thread",
                    timm["original"][0],
                    timm["original"][0],
                    timm["original"][1],
                )
            )
            rows.append(
                (
                    "timm create_transform (PIL), short side 256, 1 thread",
                    timm["ss256"][0],
                    timm["ss256"][0],
                    timm["ss256"][1],
                )
            )

    aug_s, aug_compile, backend = _augment_cost(args.aug_batch, args.aug_reps)

    print(
        f"\nedgejax data throughput  (cores: {n_cores}, load average at start: {load:.1f}, "
        f"{len(files)} images, prepare ss256: {prep_s:.1f} s)"
    )
    w = max(len(r[0]) for r in rows) + 2
    print(
        "img/s/core: wall-clock rate / cores used; img/CPU-s: images per CPU-second of the "
        "measuring process (robust to other load on the machine)"
    )
    print(f"{'measurement':<{w}}{'img/s':>10}{'img/s/core':>12}{'img/CPU-s':>11}")
    print("-" * (w + 33))
    for name, rate, per_core, cpu in rows:
        cpu_s = "n/a" if cpu != cpu else f"{cpu:.0f}"
        print(f"{name:<{w}}{rate:>10.0f}{per_core:>12.0f}{cpu_s:>11}")
    if timm:
        for label, ours, theirs in (
            ("edgejax / timm, original JPEGs, 1 thread", orig_cpu, timm["original"][1]),
            ("edgejax pipeline 1 thread / timm, short side 256", p1_cpu, timm["ss256"][1]),
            (
                f"edgejax pipeline {args.workers} threads / timm, short side 256",
                pn_cpu,
                timm["ss256"][1],
            ),
        ):
            print(f"{'ratio (per CPU-second) ' + label:<{w + 22}}{ours / theirs:>10.2f}x")
    print(
        f"{f'batch_augment, batch {args.aug_batch} @ 224 px on {backend} (ms/batch)':<{w + 22}}"
        f"{aug_s * 1000:>10.0f}"
    )
    print(f"{'batch_augment compile + first call (s)':<{w + 22}}{aug_compile:>10.1f}")


if __name__ == "__main__":
    main()
