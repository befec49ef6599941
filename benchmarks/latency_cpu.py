"""Batch-1 CPU latency: edgejax (JAX jit) vs its ONNX export in onnxruntime vs timm (PyTorch).

    python benchmarks/latency_cpu.py [--models paper] [--resolution 224] [--rounds 10] \\
        [--reps 5] [--threads 2] [--torch-python /path/to/venv-with-torch/bin/python] \\
        [--json latency_cpu.json]

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
- timm: ``timm.create_model(name)``, eval, ``timm.utils.reparameterize_model`` (RepVGG's
  reparameterisation; the other families have nothing timm can fuse), ``torch.inference_mode``,
  ``torch.set_num_threads(threads)``; NCHW-contiguous and channels_last both timed in every
  round, the faster median counts.

The ratio columns are latency / timm latency (below 1: faster than timm); the target is
``min(edgejax, onnx) / timm <= 0.7`` for every paper model. "per round" gives the quartiles of
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
        self.proc = subprocess.Popen([python, "-c", TORCH_WORKER, str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="paper")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--torch-python", default=os.environ.get("EDGEJAX_TORCH_PYTHON", sys.executable),
                    help="a Python with torch + timm (default: $EDGEJAX_TORCH_PYTHON, else this one)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import jax
    from flax import nnx
    from edgejax.bench import build_model, resolve_models, validate_resolution, _abstract_model
    from edgejax.deploy import fuse
    import onnx
    from edgejax.export import export_onnx, onnx_session, relative_error, winograd_convs

    names = resolve_models(a.models)
    for n in names:
        validate_resolution(_abstract_model(n), a.resolution, name=n)
    worker = TorchWorker(a.torch_python, a.threads)
    tmp = tempfile.mkdtemp(prefix="edgejax_latency_")
    rows = []
    print(f"# jax {jax.__version__} on {jax.devices()[0].device_kind}, {a.threads} threads, "
          f"batch 1, {a.resolution}px, {a.rounds} rounds x {a.reps} calls", file=sys.stderr)
    for name in names:
        t_start = time.time()
        model = fuse(build_model(name))
        x = np.random.default_rng(0).standard_normal((1, a.resolution, a.resolution, 3),
                                                     dtype=np.float32)
        xj = jax.device_put(x)
        graphdef, state = nnx.split(model)
        f_args = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, xj).compile()
        f_const = jax.jit(lambda x: nnx.merge(graphdef, state)(x)).lower(xj).compile()
        ref = np.asarray(f_args(state, xj))
        path = os.path.join(tmp, f"{name}.onnx")
        export_onnx(model, path, resolution=a.resolution, batch_size=1, name=name)
        proto = onnx.load(path)
        n_wino = winograd_convs(proto)
        sessions = {"onnx": onnx_session(path, threads=a.threads)}
        if n_wino:
            onnx.save(proto, path.replace(".onnx", "_winograd.onnx"))
            sessions["onnx_winograd"] = onnx_session(path.replace(".onnx", "_winograd.onnx"),
                                                     threads=a.threads)
        inp = sessions["onnx"].get_inputs()[0].name
        errs = {k: relative_error(s.run(None, {inp: x})[0], ref) for k, s in sessions.items()}
        worker.ask(op="load", model=name, res=a.resolution)
        runs = {"jax_args": lambda: f_args(state, xj), "jax_const": lambda: f_const(xj),
                **{k: (lambda s=s: s.run(None, {inp: x})) for k, s in sessions.items()}}
        for call in runs.values():  # warm-up
            _time(call, 3)
        timm_formats = ("nchw", "channels_last")
        bursts = {k: [] for k in (*runs, *timm_formats)}  # per key: one list of times per round
        for _ in range(a.rounds):
            for k, call in runs.items():
                bursts[k].append(_time(call, a.reps))
            for fmt in timm_formats:
                time.sleep(PAUSE_S)
                bursts[fmt].append(worker.ask(op="time", model=name, format=fmt,
                                              reps=a.reps)["times"])
        worker.ask(op="drop", model=name)
        times = {k: [t for b in v for t in b] for k, v in bursts.items()}
        ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        jax_best = min(("jax_args", "jax_const"), key=ms.get)
        onnx_best = min(sessions, key=ms.get)
        timm_best = min(timm_formats, key=ms.get)
        best = min((jax_best, onnx_best), key=ms.get)
        # the same ratio round by round (each round's bursts ran within ~1 s of each other), so
        # its spread shows how much of the ratio is this machine's drift
        paired = sorted(float(np.median(o) / np.median(t))
                        for o, t in zip(bursts[best], bursts[timm_best]))
        row = dict(model=name, jax_args_ms=ms["jax_args"], jax_const_ms=ms["jax_const"],
                   jax_ms=ms[jax_best], jax_variant=jax_best, onnx_direct_ms=ms["onnx"],
                   onnx_winograd_ms=ms.get("onnx_winograd"), winograd_convs=n_wino,
                   onnx_ms=ms[onnx_best], onnx_variant=onnx_best, timm_ms=ms[timm_best],
                   timm_format=timm_best, timm_other_ms=ms[({*timm_formats} - {timm_best}).pop()],
                   onnx_rel_err=max(errs.values()))
        row["p10_ms"] = {k: 1e3 * float(np.percentile(v, 10)) for k, v in times.items()}
        row["jax_ratio"] = row["jax_ms"] / row["timm_ms"]
        row["onnx_ratio"] = row["onnx_ms"] / row["timm_ms"]
        row["best_ratio"] = min(row["jax_ratio"], row["onnx_ratio"])
        row["round_ratios"] = paired
        row["round_ratio_q"] = [float(q) for q in np.percentile(paired, [25, 50, 75])]
        row["seconds"] = time.time() - t_start
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        del model, state, f_args, f_const, sessions, runs
    worker.close()

    hdr = ("model", "edgejax ms (args / const)", "onnx ms (direct / winograd)",
           "timm ms (best / other layout)", "edgejax/timm", "onnx/timm", "best/timm",
           "per round q25-q75", "target <= 0.7")
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        wino = "-" if r["onnx_winograd_ms"] is None else f"{r['onnx_winograd_ms']:.2f}"
        lines.append(f"| {r['model']} | {r['jax_args_ms']:.2f} / {r['jax_const_ms']:.2f} | "
                     f"{r['onnx_direct_ms']:.2f} / {wino} | "
                     f"{r['timm_ms']:.2f} ({r['timm_format']}) / {r['timm_other_ms']:.2f} | "
                     f"{r['jax_ratio']:.2f} | {r['onnx_ratio']:.2f} | {r['best_ratio']:.2f} | "
                     f"{r['round_ratio_q'][0]:.2f}-{r['round_ratio_q'][2]:.2f} | "
                     f"{'met' if r['best_ratio'] <= 0.7 else 'MISSED'} |")
    print("\n".join(lines))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(jax=jax.__version__, threads=a.threads, resolution=a.resolution,
                           rounds=a.rounds, reps=a.reps, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
