"""Batch-1 CPU latency: edgejax (JAX jit) vs its ONNX and LiteRT exports, float32 and int8, vs
timm (PyTorch, float32).

    python benchmarks/latency_cpu.py [--models paper] [--resolution 224] [--rounds 10] \\
        [--reps 5] [--threads 2] [--torch-python /path/to/venv-with-torch/bin/python] \\
        [--no-int8] [--no-litert] [--json latency_cpu.json]

One run measures all three in the same process tree, interleaved round by round (a round times
a 50 ms pause, one untimed and then ``reps`` timed calls of each runtime in turn), so that load
from other processes hits all three alike and no runtime's spinning threads slow the next one.
The reported latency is the median over all timed calls (the JSON also has the 10th
percentile). timm runs in a subprocess of the Python given by ``--torch-python`` (a venv with
torch + timm; this script itself needs no torch).

- edgejax: ``edgejax.deploy.fuse`` (RepVGG reparameterisation + BN folding), then ``jax.jit`` of
  the forward twice: weights passed as arguments, and weights closed over as compile-time
  constants (XLA may then constant-fold); the faster of the two is reported (both are printed).
- ONNX: the fused model exported with ``edgejax.export.export_onnx`` (batch 1), onnxruntime CPU
  with all graph optimisations, ``intra_op_num_threads=threads``; for models with wide stride-1
  3x3 convs (RepVGG) also the ``winograd=True`` export, timed alongside (both are printed; the
  faster counts).
- ONNX int8: that export through ``edgejax.export.quantize_onnx`` (onnxruntime static
  quantization, QDQ, per-channel int8 weights, int8 activations).
- LiteRT: ``edgejax.export.export_litert`` float32 and int8 (float I/O), run by
  ``ai_edge_litert``'s interpreter with its default XNNPACK delegate and ``threads`` threads.
  int8 twice: export's default (``LITERT_FLOAT_OPS`` and the normalisations' statistics kept
  float32, the rest int8) and ``full_integer=True`` (every op int8); the float16 file is
  written for its size only. An int8 file the runtime cannot load is
  reported as such. Calibration here is random images: ranges do not change the speed (the
  accuracy of int8 files is measured on real data in docs/results/quantization.md).
- timm: ``timm.create_model(name)``, eval, ``timm.utils.reparameterize_model`` (RepVGG's
  reparameterisation; the other families have nothing timm can fuse), ``torch.inference_mode``,
  ``torch.set_num_threads(threads)``; NCHW-contiguous and channels_last both timed in every
  round, the faster median counts.

The ratio columns are latency / timm float32 latency (below 1: faster than timm). Targets, by
the CPU's vector extensions (printed with the table): the best float runtime <= 0.5x timm on an
AVX-512 CPU (<= 0.7x on AVX2 only); the best int8 runtime <= 0.3x timm on a CPU with VNNI (int8
dot products; without them int8 has no target). "per round" gives the quartiles of
the same ratio taken round by round (the faster edgejax/ONNX variant against timm's faster
layout, each round's medians): the machine's speed drifts, and a round's bursts run within about
a second of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

TORCH_WORKER = r"""
import copy, json, sys, time
import torch, timm
torch.set_num_threads(int(sys.argv[1]))
models = {}
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "load":
        m = timm.create_model(cmd["model"], pretrained=False).eval()
        m = timm.utils.reparameterize_model(m)
        r = cmd["res"]
        x = torch.randn(1, 3, r, r)
        cl = torch.channels_last
        models[cmd["model"]] = {"nchw": (m, x),
                                "channels_last": (copy.deepcopy(m).to(memory_format=cl),
                                                  x.to(memory_format=cl))}
        with torch.inference_mode():
            for mm, xx in models[cmd["model"]].values():
                for _ in range(3):
                    mm(xx)
        print(json.dumps({"ok": True, "params": sum(p.numel() for p in m.parameters())}),
              flush=True)
    elif cmd["op"] == "time":
        m, x = models[cmd["model"]][cmd["format"]]
        t = []
        with torch.inference_mode():
            m(x)  # untimed: wakes the thread pool and warms the caches after the other runtimes
            for _ in range(cmd["reps"]):
                t0 = time.perf_counter(); m(x); t.append(time.perf_counter() - t0)
        print(json.dumps({"times": t}), flush=True)
    elif cmd["op"] == "drop":
        models.pop(cmd["model"], None)
        print(json.dumps({"ok": True}), flush=True)
"""


# Before each burst: let the previous runtime's worker threads stop spinning. onnxruntime's keep
# spinning for tens of ms after a run; two sessions alternating without a pause ran a matmul at
# 34 GMAC/s instead of 64 (measured on this 2-core machine).
PAUSE_S = 0.05


class TorchWorker:
    def __init__(self, python: str, threads: int):
        self.proc = subprocess.Popen(
            [python, "-c", TORCH_WORKER, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"timm worker died on {cmd}")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _count_convs(path):
    import onnx

    return sum(n.op_type == "Conv" for n in onnx.load(path).graph.node)


def _time(call, reps):
    import jax

    time.sleep(PAUSE_S)
    jax.block_until_ready(call())  # untimed, as in the timm worker: each burst starts warm
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        t.append(time.perf_counter() - t0)
    return t


def main(argv=None):
    from edgejax.bench import add_torch_python_flag

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="paper")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    add_torch_python_flag(ap)
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 files")
    ap.add_argument("--no-litert", action="store_true", help="skip LiteRT")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import jax
    from flax import nnx
    from edgejax.bench import build_model, resolve_models, validate_resolution, _abstract_model
    from edgejax.deploy import fuse
    from edgejax.bench import cpu_flags
    from edgejax.export import export_onnx, onnx_session, relative_error

    flags = cpu_flags()
    float_target = 0.5 if "avx512f" in flags else 0.7
    int8_target = 0.3 if {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags) else None

    names = resolve_models(a.models)
    for n in names:
        validate_resolution(_abstract_model(n), a.resolution, name=n)
    worker = TorchWorker(a.torch_python, a.threads)
    tmp = tempfile.mkdtemp(prefix="edgejax_latency_")
    rows = []
    print(
        f"# jax {jax.__version__} on {jax.devices()[0].device_kind}, {a.threads} threads, "
        f"batch 1, {a.resolution}px, {a.rounds} rounds x {a.reps} calls; CPU flags: "
        f"{' '.join(flags) or 'unknown'}",
        file=sys.stderr,
    )
    for name in names:
        t_start = time.time()
        model = fuse(build_model(name))
        x = np.random.default_rng(0).standard_normal(
            (1, a.resolution, a.resolution, 3), dtype=np.float32
        )
        xj = jax.device_put(x)
        graphdef, state = nnx.split(model)
        f_args = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, xj).compile()
        f_const = jax.jit(lambda x: nnx.merge(graphdef, state)(x)).lower(xj).compile()
        ref = np.asarray(f_args(state, xj))
        path = os.path.join(tmp, f"{name}.onnx")
        export_onnx(model, path, resolution=a.resolution, batch_size=1, name=name)
        p_w = path.replace(".onnx", "_winograd.onnx")
        export_onnx(model, p_w, resolution=a.resolution, batch_size=1, name=name, winograd=True)
        n_wino = _count_convs(path) - _count_convs(p_w)
        sessions = {"onnx": onnx_session(path, threads=a.threads)}
        if n_wino:
            sessions["onnx_winograd"] = onnx_session(p_w, threads=a.threads)
        inp = sessions["onnx"].get_inputs()[0].name
        errs = {k: relative_error(s.run(None, {inp: x})[0], ref) for k, s in sessions.items()}
        sizes = {"onnx_fp32": os.path.getsize(path)}
        int8_runs, notes = {}, {}
        cal = np.random.default_rng(1).standard_normal(
            (8, a.resolution, a.resolution, 3), dtype=np.float32
        )
        if not a.no_int8:
            from edgejax.export import quantize_onnx

            q = quantize_onnx(path, path.replace(".onnx", "_int8.onnx"), cal, name=name)
            sizes["onnx_int8"] = os.path.getsize(q)
            s8 = onnx_session(q, threads=a.threads)
            int8_runs["onnx_int8"] = lambda s=s8: s.run(None, {inp: x})
        if not a.no_litert:
            from edgejax.export import export_litert, litert_runner

            for kind, kw in (
                ("fp32", {}),
                ("fp16", {"dtype": "float16"}),
                ("int8", {"quantize": "int8", "calibration": cal}),
                ("int8_full", {"quantize": "int8", "calibration": cal, "full_integer": True}),
            ):
                if kind.startswith("int8") and a.no_int8:
                    continue
                f = os.path.join(tmp, f"{name}_{kind}.tflite")
                try:
                    export_litert(model, f, resolution=a.resolution, name=name, **kw)
                except RuntimeError as e:  # an int8 file the runtime cannot load
                    notes[f"litert_{kind}"] = str(e)
                    continue
                sizes[f"litert_{kind}"] = os.path.getsize(f)
                if kind == "fp16":
                    continue
                run, _ = litert_runner(f, threads=a.threads)
                if kind.startswith("int8"):
                    int8_runs[f"litert_{kind}"] = lambda r=run: r(x)
                else:
                    sessions["litert_fp32"] = run
                if kind == "fp32":
                    errs["litert_fp32"] = relative_error(run(x), ref)
        worker.ask(op="load", model=name, res=a.resolution)
        runs = {
            "jax_args": lambda: f_args(state, xj),
            "jax_const": lambda: f_const(xj),
            **{
                k: (lambda s=s: s.run(None, {inp: x}))
                for k, s in sessions.items()
                if k.startswith("onnx")
            },
            **{k: (lambda r=r: r(x)) for k, r in sessions.items() if k.startswith("litert")},
            **int8_runs,
        }
        for call in runs.values():  # warm-up
            _time(call, 3)
        timm_formats = ("nchw", "channels_last")
        bursts = {k: [] for k in (*runs, *timm_formats)}  # per key: one list of times per round
        for _ in range(a.rounds):
            for k, call in runs.items():
                bursts[k].append(_time(call, a.reps))
            for fmt in timm_formats:
                time.sleep(PAUSE_S)
                bursts[fmt].append(
                    worker.ask(op="time", model=name, format=fmt, reps=a.reps)["times"]
                )
        worker.ask(op="drop", model=name)
        times = {k: [t for b in v for t in b] for k, v in bursts.items()}
        ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        jax_best = min(("jax_args", "jax_const"), key=ms.get)
        onnx_best = min((k for k in sessions if k.startswith("onnx")), key=ms.get)
        timm_best = min(timm_formats, key=ms.get)
        best = min((jax_best, *sessions), key=ms.get)  # the fastest float runtime
        best8 = min(int8_runs, key=ms.get) if int8_runs else None
        # the same ratio round by round (each round's bursts ran within ~1 s of each other), so
        # its spread shows how much of the ratio is this machine's drift
        paired = sorted(
            float(np.median(o) / np.median(t)) for o, t in zip(bursts[best], bursts[timm_best])
        )
        row = dict(
            model=name,
            jax_args_ms=ms["jax_args"],
            jax_const_ms=ms["jax_const"],
            jax_ms=ms[jax_best],
            jax_variant=jax_best,
            onnx_direct_ms=ms["onnx"],
            onnx_winograd_ms=ms.get("onnx_winograd"),
            winograd_convs=n_wino,
            onnx_ms=ms[onnx_best],
            onnx_variant=onnx_best,
            timm_ms=ms[timm_best],
            timm_format=timm_best,
            timm_other_ms=ms[({*timm_formats} - {timm_best}).pop()],
            onnx_rel_err=max(v for k, v in errs.items() if k.startswith("onnx")),
            litert_fp32_ms=ms.get("litert_fp32"),
            litert_rel_err=errs.get("litert_fp32"),
            onnx_int8_ms=ms.get("onnx_int8"),
            litert_int8_ms=ms.get("litert_int8"),
            litert_int8_full_ms=ms.get("litert_int8_full"),
            best_float=best,
            best_int8=best8,
            sizes_mb={k: v / 2**20 for k, v in sizes.items()},
            notes=notes,
        )
        row["p10_ms"] = {k: 1e3 * float(np.percentile(v, 10)) for k, v in times.items()}
        row["jax_ratio"] = row["jax_ms"] / row["timm_ms"]
        row["onnx_ratio"] = row["onnx_ms"] / row["timm_ms"]
        row["best_ratio"] = ms[best] / row["timm_ms"]
        row["int8_ratio"] = ms[best8] / row["timm_ms"] if best8 else None
        row["float_target_met"] = row["best_ratio"] <= float_target
        row["int8_target_met"] = (
            None if int8_target is None or best8 is None else row["int8_ratio"] <= int8_target
        )
        row["round_ratios"] = paired
        row["round_ratio_q"] = [float(q) for q in np.percentile(paired, [25, 50, 75])]
        row["seconds"] = time.time() - t_start
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        model = state = f_args = f_const = sessions = runs = int8_runs = (
            None  # free before the next
        )
    worker.close()

    def f(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    def loaded(r, key):
        return "does not load" if key in r["notes"] else f(r[f"{key}_ms"])

    def yes(v):
        return "-" if v is None else ("yes" if v else "no")

    hdr = (
        "model",
        "edgejax ms (args / const)",
        "onnx ms (direct / winograd)",
        "litert ms",
        "timm ms (best / other layout)",
        "best float / timm",
        "per round q25-q75",
        f"float <= {float_target}",
        "onnx int8 ms",
        "litert int8 ms (default / full integer)",
        "best int8 / timm",
        f"int8 <= {int8_target}" if int8_target else "int8 target",
        "MB onnx fp32 / int8",
        "MB litert fp32 / fp16 / int8",
    )
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        mb = r["sizes_mb"]
        b8 = f" ({r['best_int8']})" if r["best_int8"] else ""
        lines.append(
            f"| {r['model']} | {r['jax_args_ms']:.2f} / {r['jax_const_ms']:.2f} | "
            f"{r['onnx_direct_ms']:.2f} / {f(r['onnx_winograd_ms'])} | {f(r['litert_fp32_ms'])} | "
            f"{r['timm_ms']:.2f} ({r['timm_format']}) / {r['timm_other_ms']:.2f} | "
            f"{r['best_ratio']:.2f} ({r['best_float']}) | "
            f"{r['round_ratio_q'][0]:.2f}-{r['round_ratio_q'][2]:.2f} | "
            f"{yes(r['float_target_met'])} | {f(r['onnx_int8_ms'])} | "
            f"{loaded(r, 'litert_int8')} / {loaded(r, 'litert_int8_full')} | "
            f"{f(r['int8_ratio'])}{b8} | "
            f"{yes(r['int8_target_met'])} | "
            f"{f(mb.get('onnx_fp32'), '{:.1f}')} / {f(mb.get('onnx_int8'), '{:.1f}')} | "
            f"{f(mb.get('litert_fp32'), '{:.1f}')} / {f(mb.get('litert_fp16'), '{:.1f}')} / "
            f"{f(mb.get('litert_int8'), '{:.1f}')} |"
        )
    print(f"CPU flags: {' '.join(flags) or 'unknown'}; {a.threads} threads; jax {jax.__version__}")
    print("\n".join(lines))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                dict(
                    jax=jax.__version__,
                    threads=a.threads,
                    resolution=a.resolution,
                    cpu_flags=flags,
                    float_target=float_target,
                    int8_target=int8_target,
                    rounds=a.rounds,
                    reps=a.reps,
                    rows=rows,
                ),
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
