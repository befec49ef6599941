"""A/B latency of ONNX files in onnxruntime: two (or more) exports of one model, timed in the
same process, interleaved round by round, on the same input; their outputs compared.

    python benchmarks/onnx_ab.py A.onnx B.onnx [C.onnx ...] [--rounds 20] [--reps 10] \\
        [--threads 2] [--json ab.json]

Each round pauses 50 ms, then makes one untimed and ``reps`` timed batch-1 calls of each file in
turn (the order rotates from round to round), so that drift in the machine's speed and load from
other processes reach every file alike. Reported per file: the median and 10th percentile over
all timed calls, the ratio of its median to the first file's, the quartiles of that ratio taken
round by round, and the relative error of its output against the first file's. The CPU's vector
extensions are printed with the table (ratios move with them). Used for graph rewrites such as
``edgejax.export.layout`` (export the same model with and without it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PAUSE_S = 0.05


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="ONNX files of one model (the first is the baseline)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if len(a.files) < 2:
        ap.error("give at least two ONNX files")
    for f in a.files:
        if not os.path.isfile(f):
            ap.error(f"no such file: {f}")
    if a.rounds < 1 or a.reps < 1:
        ap.error("--rounds and --reps must be at least 1")

    import onnxruntime as ort

    from edgejax.bench import cpu_flags
    from edgejax.export import onnx_session, relative_error

    sessions = [onnx_session(f, threads=a.threads) for f in a.files]
    shapes = []
    for f, s in zip(a.files, sessions):
        i = s.get_inputs()[0]
        shapes.append(tuple(d if isinstance(d, int) else 1 for d in i.shape))
    if len(set(shapes)) != 1:
        ap.error("the files take inputs of different shapes: " + ", ".join(map(str, shapes)))
    x = np.random.default_rng(0).standard_normal(shapes[0], dtype=np.float32)
    feeds = [{s.get_inputs()[0].name: x} for s in sessions]
    outs = [s.run(None, fd)[0] for s, fd in zip(sessions, feeds)]
    errs = [relative_error(o, outs[0]) for o in outs]

    times = [[] for _ in a.files]
    per_round = [[] for _ in a.files]
    for r in range(a.rounds):
        order = [(k + r) % len(a.files) for k in range(len(a.files))]
        med = {}
        for k in order:
            time.sleep(PAUSE_S)
            sessions[k].run(None, feeds[k])
            t = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                sessions[k].run(None, feeds[k])
                t.append(time.perf_counter() - t0)
            times[k].extend(t)
            med[k] = float(np.median(t))
        for k in range(len(a.files)):
            per_round[k].append(med[k] / med[0])

    flags = cpu_flags()
    print(
        f"# onnxruntime {ort.__version__}, {a.threads} threads, batch 1, input {shapes[0]}, "
        f"{a.rounds} rounds x {a.reps} calls; CPU flags: {' '.join(flags) or 'unknown'}"
    )
    print("| file | median ms | p10 ms | ratio | per round (q1-q3) | rel. err vs first |")
    print("|---|---|---|---|---|---|")
    rows = []
    base = float(np.median(times[0]))
    for f, t, pr, e in zip(a.files, times, per_round, errs):
        m, p10 = float(np.median(t)) * 1e3, float(np.percentile(t, 10)) * 1e3
        q1, q3 = np.percentile(pr, [25, 75])
        rows.append(
            {
                "file": f,
                "median_ms": m,
                "p10_ms": p10,
                "ratio": m / (base * 1e3),
                "per_round_q1": float(q1),
                "per_round_q3": float(q3),
                "rel_err": e,
            }
        )
        print(
            f"| {os.path.basename(f)} | {m:.2f} | {p10:.2f} | {m / (base * 1e3):.3f} "
            f"| {q1:.3f}-{q3:.3f} | {e:.1e} |"
        )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"cpu_flags": flags, "threads": a.threads, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
