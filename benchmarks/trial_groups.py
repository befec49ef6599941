"""Trial groups against one-trial runs: train img/s for K trials at once vs K separate runs.

    python benchmarks/trial_groups.py                      # GPU defaults: batch 128, 224 px
    python benchmarks/trial_groups.py --batch 32 --size 64 --ks 1,2,4 --steps 4   # a CPU run

For each model and K, on the real input pipeline (an ImageFolder, default
../shared/data/cifar10's train split, decoded and resized by Grain; without it the bundled digits):

- ``solo x K``: K one-trial runs one after another, each with its own loader (every batch decoded
  K times) and the compiled one-trial step;
- ``sequential``: one group, one loader (decode once), the same compiled step called once per
  trial on each shared batch (what the CPU backend uses);
- ``vmap``: one group, one loader, one call of the ``vmap``-ed step for all K trials.

Figures: total trained img/s (all trials), per-trial img/s, the group's cost relative to the K
runs it replaces (wall time; < 1 is cheaper), the input pipeline's CPU-seconds per trained image
(process CPU time spent producing batches, divided by the images the trials consumed), and
memory (GPU: the process's peak bytes; elsewhere XLA's planned footprint of the step plus the
K states). Every trial has its own lr and seed (they differ, as in a sweep). Prints the CPU's
vector extensions: ratios move with them, compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_CIFAR = os.path.join(HERE, "..", "..", "shared", "data", "cifar10")
MODELS = ("mobilenetv3_large_100", "mobilevitv2_050", "repvgg_a2")


def cpu_flags() -> str:
    from edgejax.bench import cpu_flags as flags

    return ",".join(flags()) or "none of avx2/avx512"


def _configs(name, k, batch, size, dataset):
    from edgejax.train import base_config

    out = []
    for i in range(k):
        c = base_config()
        c.model.name = name
        c.data.dataset = dataset
        c.data.image_size = size
        c.global_batch_size = batch
        c.optimizer.name = "sgd"
        c.optimizer.lr = 0.05 * (1.0 + 0.25 * i)
        c.optimizer.weight_decay = 5e-5
        c.augment.label_smoothing = 0.1
        c.seed = i
        c.data.seed = 0
        c.log.progress = False
        out.append(c)
    return out


class _Timer:
    """Wall time of a loop and the CPU time the loader spent producing its batches."""

    def __init__(self, loader):
        self.it = iter(loader)
        self.cpu = 0.0

    def next(self):
        c0 = time.process_time()
        b = next(self.it)
        self.cpu += time.process_time() - c0
        return b


def _state_bytes(state) -> int:
    import jax

    return sum(x.nbytes for x in jax.tree.leaves(state))


def measure(name, k, *, batch, size, steps, warmup, dataset, modes) -> dict:
    import jax
    import numpy as np

    from edgejax import data
    from edgejax.train.config import validate
    from edgejax.train.hparams import Features
    from edgejax.train.loop import Run, _stack

    configs = [validate(c) for c in _configs(name, k, batch, size, dataset)]
    src, info = data.build_source(dataset, "train")
    spe = data.steps_per_epoch(len(src), batch)
    r = Run(
        configs[0],
        num_classes=int(info["num_classes"]),
        steps_per_epoch=spe,
        total_steps=10_000,
        features=Features.of(configs),
    )

    def loader(start):
        return data.make_train_loader(
            src,
            global_batch_size=batch,
            image_size=r.image_size,
            seed=0,
            start_step=start,
            workers=0,
            interpolation=r.interpolation,
            sharding=r.batch_sharding,
        )

    def block(x):
        jax.block_until_ready(x)

    rec = {"model": name, "k": k, "batch": batch, "size": size, "steps": steps}
    # Compile (and warm up) the one-trial step, and the vmapped one when asked for.
    st = r.init_state(configs[0])
    t = _Timer(loader(0))
    for _ in range(warmup):
        st, m = r.train_step(st, t.next())
    block(m)
    states = [r.init_state(c) for c in configs]
    state_b = _state_bytes(states[0])
    try:
        mem = r.train_step.lower(st, t.next()).compile().memory_analysis()
        step_temp = mem.temp_size_in_bytes
    except Exception:  # noqa: BLE001  (not every backend reports it)
        step_temp = None
    del st

    # K one-trial runs, one after another: each decodes its own batches. Only the training
    # loops are timed (a fresh state per run is set up outside the clock).
    solo_s, cpu = 0.0, 0.0
    for c in configs:
        s = r.init_state(c)
        block(s.params)
        t = _Timer(loader(warmup))
        t1 = time.perf_counter()
        for _ in range(steps):
            s, m = r.train_step(s, t.next())
        block(m)
        solo_s += time.perf_counter() - t1
        cpu += t.cpu
        del s
    rec["solo_img_s"] = k * steps * batch / solo_s
    rec["solo_cpu_per_img"] = cpu / (k * steps * batch)

    if "sequential" in modes:
        t = _Timer(loader(warmup))
        t1 = time.perf_counter()
        for _ in range(steps):
            b = t.next()
            for i in range(k):
                states[i], m = r.train_step(states[i], b)
        block(m)
        dt = time.perf_counter() - t1
        rec.update(
            seq_img_s=k * steps * batch / dt,
            seq_cost=dt / solo_s,
            seq_cpu_per_img=t.cpu / (k * steps * batch),
        )
    if "vmap" in modes and k > 1:
        g = _stack(states)
        del states
        t = _Timer(loader(warmup))
        c0 = time.perf_counter()
        g, m = r.group_train_step(g, t.next())  # compiles
        block(m)
        rec["vmap_compile_s"] = time.perf_counter() - c0
        t = _Timer(loader(warmup))
        t1 = time.perf_counter()
        for _ in range(steps):
            g, m = r.group_train_step(g, t.next())
        block(m)
        dt = time.perf_counter() - t1
        rec.update(
            vmap_img_s=k * steps * batch / dt,
            vmap_cost=dt / solo_s,
            vmap_cpu_per_img=t.cpu / (k * steps * batch),
        )
        try:
            gm = r.group_train_step.lower(g, t.next()).compile().memory_analysis()
            rec["vmap_mem_gib"] = (gm.argument_size_in_bytes + gm.temp_size_in_bytes) / 2**30
        except Exception:  # noqa: BLE001
            pass
    if step_temp is not None:
        rec["seq_mem_gib"] = (k * state_b + step_temp) / 2**30
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        rec["peak_gib"] = stats["peak_bytes_in_use"] / 2**30
    rec["loss_finite"] = bool(np.isfinite(float(m["loss"][-1] if m["loss"].ndim else m["loss"])))
    return rec


def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def table(rows) -> str:
    head = (
        "| model | K | K solo runs img/s | sequential img/s | per trial | cost vs K runs |"
        " vmap img/s | per trial | cost vs K runs | pipeline CPU-ms / img (solo, group) |"
        " memory GiB (seq, vmap) |"
    )
    out = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r.get('k', '-')} | {r['error']} |" + " |" * 8)
            continue
        k = r["k"]
        seq, vm = r.get("seq_img_s"), r.get("vmap_img_s")
        group_cpu = r.get("seq_cpu_per_img", r.get("vmap_cpu_per_img"))
        out.append(
            f"| {r['model']} | {k} | {_f(r['solo_img_s'])} | {_f(seq)} | "
            f"{_f(seq / k if seq else None)} | {_f(r.get('seq_cost'), '{:.2f}x')} | {_f(vm)} | "
            f"{_f(vm / k if vm else None)} | {_f(r.get('vmap_cost'), '{:.2f}x')} | "
            f"{_f(1e3 * r['solo_cpu_per_img'], '{:.2f}')}, {_f(None if group_cpu is None else 1e3 * group_cpu, '{:.2f}')} | "
            f"{_f(r.get('seq_mem_gib'), '{:.2f}')}, {_f(r.get('peak_gib', r.get('vmap_mem_gib')), '{:.2f}')} |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--ks", default="1,2,4,8", help="group sizes")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--resolution", "--size", dest="size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10, help="timed steps per trial")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--modes", default="sequential,vmap")
    p.add_argument(
        "--vmap-max-k",
        type=int,
        default=0,
        help="measure vmap only up to this K (0: all; vmap compiles slowly on CPU)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="ImageFolder root with train/ (default ../shared/data/cifar10, else digits)",
    )
    p.add_argument("--json", default=None, help="write the records here")
    a = p.parse_args(argv)
    import jax

    dataset = a.data or (SHARED_CIFAR if os.path.isdir(SHARED_CIFAR) else "digits")
    dev = jax.devices()
    print(
        f"# {len(dev)} x {dev[0].device_kind} ({jax.default_backend()}), CPU flags "
        f"{cpu_flags()}, {os.cpu_count()} CPUs, batch {a.batch}, {a.size} px, float32, "
        f"data {os.path.abspath(dataset) if dataset != 'digits' else 'digits'}, "
        f"jax {jax.__version__}",
        flush=True,
    )
    rows = []
    for name in a.models.split(","):
        for k in (int(x) for x in a.ks.split(",")):
            modes = set(a.modes.split(","))
            if a.vmap_max_k and k > a.vmap_max_k:
                modes.discard("vmap")
            try:
                rows.append(
                    measure(
                        name,
                        k,
                        batch=a.batch,
                        size=a.size,
                        steps=a.steps,
                        warmup=a.warmup,
                        dataset=dataset,
                        modes=modes,
                    )
                )
            except Exception as e:  # one case failing must not hide the others
                traceback.print_exc()
                rows.append({"model": name, "k": k, "error": f"{type(e).__name__}: {str(e)[:80]}"})
            print(f"# {json.dumps(rows[-1])}", flush=True)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(rows, f, indent=1)
    print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
