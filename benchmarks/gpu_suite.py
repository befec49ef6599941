"""All of edgejax's accelerator figures beside timm's, in one run, within a time budget.

    python benchmarks/gpu_suite.py --baseline ../shared/bench/timm_baseline.py \\
        [--precompile 8] [--budget-s 520] [--models paper] [--batch 256] [--out-dir DIR]

Made for a GPU held for a few minutes: every phase is a subprocess given what is left of
``--budget-s``, writes its records as it goes, and the tables at the end use whatever finished.
Phases, in order of importance:

1. ``precompile`` (``--precompile N``, N > 0): N worker processes compile every edgejax program
   the later phases time (``edgejax.bench --reps 0`` and ``train_throughput.prepare``) into a
   persistent XLA compilation cache (``JAX_COMPILATION_CACHE_DIR``; a temporary one if unset),
   so the timed phases load their programs instead of compiling them one after another. The
   compile times reported are these cold compiles, N at a time on the host's cores.
2. ``infer``: ``python -m edgejax.bench --batch-sizes 1,B`` (eval mode, weights as arguments).
3. ``timm``: ``timm_baseline.py`` at batch B, eager (train, inference at B, latency at batch 1,
   RepVGG re-parameterised too).
4. ``train``: ``benchmarks/train_throughput.py`` at batch B (the production train step).
5. ``deploy``: ``edgejax.bench --deploy`` (``edgejax.deploy.fuse``: BatchNorm folded, RepVGG
   re-parameterised) at batch 1, and at B for RepVGG (timm's re-parameterised RepVGG is timed).
6. ``timm-compile``: ``timm_baseline.py`` with ``torch.compile`` for ``--timm-compile`` models.
7. ``groups``: ``benchmarks/trial_groups.py`` (K trials in one program vs K runs; batch
   ``--group-batch``, K in ``--group-ks``; targets: K = 8 >= 4x one run for
   mobilenetv3_large_100 and mobilevitv2_050, >= 2x for repvgg_a2).
8. ``distill``: ``benchmarks/train_throughput.py --teacher T`` for the students of
   ``--distill-students`` (teacher ``--distill-teacher``, random weights, at its own input
   size, inside the student's step): img/s of online distillation beside the student alone
   (the ``train`` phase's figure).

Targets (issue #6, inference): edgejax img/s at batch B >= 1.5x timm eager, latency at batch 1
<= 2 ms. (Issue #5, training): img/s >= 1.5x timm eager and >= 1.2x timm torch.compile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing import get_context

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PHASES = ("precompile", "infer", "timm", "train", "deploy", "timm-compile", "groups", "distill")
INFER_TARGET, LATENCY_TARGET_MS, TRAIN_EAGER_TARGET, TRAIN_COMPILED_TARGET = 1.5, 2.0, 1.5, 1.2


def _reparameterised_by_timm(model: str) -> bool:
    """timm_baseline.py also times these re-parameterised (``deploy_*``), so the suite times
    edgejax's fused form at the large batch too and compares like with like."""
    return model.startswith("repvgg")


# ----------------------------------------------------------------------------------------------
# Precompile workers (spawned processes: they share the GPU, so no memory is preallocated)


def _init_worker(env: dict):
    os.environ.update(env)
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    sys.path[:0] = [REPO, HERE]


def _compile_job(job: dict) -> dict:
    t0 = time.perf_counter()
    try:
        if job["kind"] == "train":
            import train_throughput

            compile_s = train_throughput.prepare(
                job["model"], job["batch"], job["resolution"], job["dtype"]
            )[3]
        else:
            from edgejax.bench import benchmark

            (rec,) = benchmark(
                [job["model"]],
                [job["batch"]],
                resolution=job["resolution"],
                dtype=job["dtype"],
                deploy=job["deploy"],
                reps=0,
            )
            compile_s = rec.get("compile_s")
        return dict(job, compile_s=compile_s, wall_s=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001  (reported; the timed phase compiles it again)
        return dict(
            job,
            error=f"{type(e).__name__}: {e}"[:300],
            trace=traceback.format_exc()[-2000:],
            wall_s=time.perf_counter() - t0,
        )


def _jobs(args, models: list[str]) -> list[dict]:
    base = dict(resolution=args.resolution, dtype=args.dtype)
    jobs = []
    if "train" in args.phases:
        jobs += [dict(base, kind="train", model=m, batch=args.batch, deploy=False) for m in models]
    for b in (args.batch, 1):
        if "infer" in args.phases:
            jobs += [dict(base, kind="infer", model=m, batch=b, deploy=False) for m in models]
        if "deploy" in args.phases:
            jobs += [
                dict(base, kind="infer", model=m, batch=b, deploy=True)
                for m in models
                if b == 1 or _reparameterised_by_timm(m)
            ]
    return jobs  # the longest (train steps, large batches) first


def precompile(args, models, env, timeout_s: float, out_path: str) -> list[dict]:
    jobs = _jobs(args, models)
    print(
        f"# precompile: {len(jobs)} programs, {args.precompile} workers, "
        f"cache {env['JAX_COMPILATION_CACHE_DIR']}",
        flush=True,
    )
    done = []
    ex = ProcessPoolExecutor(
        args.precompile, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(env,)
    )
    futures = [ex.submit(_compile_job, j) for j in jobs]
    _, pending = wait(futures, timeout=timeout_s)
    for f in futures:
        if f.done() and not f.cancelled() and f.exception() is None:
            r = f.result()
            done.append(r)
            status = r.get("error") or f"compile {r['compile_s']:.1f} s"
            print(
                f"#   {r['kind']} {r['model']} b={r['batch']}{' deploy' if r['deploy'] else ''}: "
                f"{status}",
                flush=True,
            )
            if "trace" in r:
                print(r["trace"], flush=True)
    if pending:
        print(
            f"# precompile: {len(pending)} programs left after {timeout_s:.0f} s; "
            "the timed phases compile them",
            flush=True,
        )
        for p in list(getattr(ex, "_processes", {}).values()):
            p.kill()
    ex.shutdown(wait=not pending, cancel_futures=True)
    with open(out_path, "w") as f:
        json.dump(done, f, indent=1)
    return done


# ----------------------------------------------------------------------------------------------
# Phases as subprocesses


def _run(cmd: list[str], env: dict, timeout_s: float, log) -> int | None:
    print(f"# $ {' '.join(cmd)}  (limit {timeout_s:.0f} s)", flush=True)
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    t0 = time.time()
    try:
        rc = subprocess.run(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s
        ).returncode
    except subprocess.TimeoutExpired:
        rc = None
    print(
        f"#   {'rc ' + str(rc) if rc is not None else 'stopped at its limit'} after "
        f"{time.time() - t0:.0f} s",
        flush=True,
    )
    return rc


def _load(path: str, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _timm_records(path: str) -> tuple[dict, dict]:
    from train_throughput import parse_baseline

    try:
        with open(path) as f:
            return parse_baseline(f.read().splitlines())
    except OSError:
        return {}, {}


# ----------------------------------------------------------------------------------------------
# Tables


def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def _ratio(a, b, target, higher=True):
    if a is None or not b:
        return "-", "-"
    r = a / b
    return f"{r:.2f}x", ("met" if (r >= target if higher else r <= target) else "not met")


def inference_table(infer: list, deploy: list, eager: dict, batch: int, precompiled: dict) -> str:
    by = {
        (r["model"], r["batch_size"], bool(r.get("deploy"))): r
        for r in infer + deploy
        if "lat_ms_p50" in r
    }
    models = list(dict.fromkeys(r["model"] for r in infer + deploy))
    head = (
        f"| model | params M | GMACs | compile s (b={batch}) | edgejax b={batch} img/s | "
        f"timm eager img/s | ratio | >= {INFER_TARGET}x | edgejax b=1 p50 ms (fused) | "
        f"timm b=1 ms | <= {LATENCY_TARGET_MS:g} ms |"
    )
    rows = [head, "|---" * (head.count("|") - 1) + "|"]
    for m in models:
        big, one = by.get((m, batch, False)), by.get((m, 1, False))
        big_d, one_d = by.get((m, batch, True)), by.get((m, 1, True))
        t = eager.get(m, {})
        if _reparameterised_by_timm(m) and big_d:  # re-parameterised against re-parameterised
            big, ref, ref_lat = big_d, t.get("deploy_infer_img_s"), t.get("deploy_lat_b1_ms")
            tag = " (both re-parameterised)"
        else:
            ref, ref_lat, tag = t.get("infer_img_s"), t.get("lat_b1_ms"), ""
        ratio, ok = _ratio(big and big["img_s"], ref, INFER_TARGET)
        lats = [r["lat_ms_p50"] for r in (one, one_d) if r]
        best = min(lats) if lats else None
        lat_ok = "-" if best is None else ("met" if best <= LATENCY_TARGET_MS else "not met")
        rec = big or one or {}
        comp = precompiled.get(("infer", m, batch, bool(big and big.get("deploy"))))
        rows.append(
            f"| {m}{tag} | {_f(rec.get('params') and rec['params'] / 1e6, '{:.2f}')} | "
            f"{_f(rec.get('gmacs'), '{:.2f}')} | {_f(comp)} | {_f(big and big['img_s'])} | "
            f"{_f(ref)} | {ratio} | {ok} | {_f(one and one['lat_ms_p50'], '{:.2f}')} "
            f"({_f(one_d and one_d['lat_ms_p50'], '{:.2f}')}) | {_f(ref_lat, '{:.2f}')} | "
            f"{lat_ok} |"
        )
    return "\n".join(rows)


def training_table(train: list, eager: dict, compiled: dict, precompiled: dict) -> str:
    head = (
        "| model | edgejax img/s | step ms | compile s | XLA mem GiB | timm eager img/s | "
        f"ratio | >= {TRAIN_EAGER_TARGET}x | timm compiled img/s | ratio | "
        f">= {TRAIN_COMPILED_TARGET}x |"
    )
    rows = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in train:
        if "error" in r:
            rows.append(f"| {r['model']} | {r['error']} |")
            continue
        e = eager.get(r["model"], {}).get("train_img_s")
        c = compiled.get(r["model"], {}).get("train_img_s")
        comp = precompiled.get(("train", r["model"], None, False), r["compile_s"])
        rows.append(
            f"| {r['model']} | {r['img_s']:.1f} | {r['step_ms']:.1f} | {_f(comp)} | "
            f"{_f(r.get('mem_gib'), '{:.2f}')} | {_f(e)} | "
            + " | ".join(_ratio(r["img_s"], e, TRAIN_EAGER_TARGET))
            + f" | {_f(c)} | "
            + " | ".join(_ratio(r["img_s"], c, TRAIN_COMPILED_TARGET))
            + " |"
        )
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------


def distill_table(distill: list, train: list) -> str:
    """Student + teacher img/s beside the student alone (the train phase's record)."""
    alone = {r["model"]: r.get("img_s") for r in train if "error" not in r}
    lines = [
        "| student | teacher | img/s distilled | img/s alone | distilled / alone |",
        "|---|---|---|---|---|",
    ]
    for r in distill:
        if "error" in r:
            lines.append(f"| {r['model']} | - | {r['error']} | - | - |")
            continue
        a = alone.get(r["model"])
        ratio = f"{r['img_s'] / a:.2f}" if a else "-"
        lines.append(
            f"| {r['model']} | {r.get('teacher')} | {r['img_s']:.1f} | {_f(a)} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from edgejax.bench import add_torch_python_flag

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="paper", help="comma list, or 'paper' (the nine)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--budget-s", type=float, default=520, help="the whole run's time budget")
    p.add_argument("--precompile", type=int, default=8, help="compile workers (0: none)")
    p.add_argument(
        "--precompile-share",
        type=float,
        default=0.35,
        help="at most this share of the budget for the precompile phase",
    )
    p.add_argument("--phases", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    p.add_argument("--baseline", default=None, help="../shared/bench/timm_baseline.py")
    add_torch_python_flag(p)
    p.add_argument("--timm-compile", default="mobilenetv3_large_100,repvgg_a2,convnext_tiny")
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--group-batch", type=int, default=128, help="batch of the groups phase")
    p.add_argument("--group-ks", default="1,2,4,8", help="group sizes of the groups phase")
    p.add_argument(
        "--distill-students",
        default="mobilenetv3_large_100,mobilevitv2_050,tiny_vit_21m_224",
        help="students of the distill phase",
    )
    p.add_argument(
        "--distill-teacher", default="convnext_tiny", help="teacher of the distill phase"
    )
    p.add_argument("--out-dir", default=None, help="records and logs (default: a temporary dir)")
    args = p.parse_args(argv)
    args.phases = [s for s in args.phases.split(",") if s]
    bad = sorted(set(args.phases) - set(PHASES))
    if bad:
        p.error(f"unknown phase(s) {', '.join(bad)}; choose from {', '.join(PHASES)}")
    if args.batch < 1 or args.resolution < 1:
        p.error("--batch and --resolution must be positive")
    if args.baseline and not os.path.isfile(args.baseline):
        p.error(f"--baseline {args.baseline}: no such file")
    sys.path[:0] = [REPO, HERE]
    from edgejax.bench import resolve_models, validate_resolution, _abstract_model

    try:
        models = resolve_models(args.models)
        for m in models:
            validate_resolution(_abstract_model(m), args.resolution, name=m)
    except ValueError as e:
        p.error(str(e))

    start = time.time()
    deadline = start + args.budget_s
    out = args.out_dir or tempfile.mkdtemp(prefix="edgejax-gpu-suite-")
    os.makedirs(out, exist_ok=True)
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(out, "xla-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    paths = {
        k: os.path.join(out, f)
        for k, f in dict(
            precompile="precompile.json",
            infer="infer.json",
            deploy="deploy.json",
            train="train.json",
            timm="timm.jsonl",
            groups="groups.json",
            distill="distill.json",
            log="phases.log",
            suite="suite.json",
        ).items()
    }
    log = open(paths["log"], "a")
    py, mlist = sys.executable, ",".join(models)
    bench_args = [
        "--resolution",
        str(args.resolution),
        "--dtype",
        args.dtype,
        "--warmup",
        "5",
        "--reps",
        "100",
        "--max-time",
        "5",
        "--no-progress",
    ]
    left = lambda: deadline - time.time()  # noqa: E731
    ran = {}

    for phase in args.phases:
        if left() < 15:
            print(f"# {phase}: skipped, the budget is spent", flush=True)
            continue
        t0 = time.time()
        if phase == "precompile" and args.precompile > 0:
            precompile(
                args, models, env, args.precompile_share * args.budget_s, paths["precompile"]
            )
        elif phase == "infer":
            _run(
                [
                    py,
                    "-m",
                    "edgejax.bench",
                    "--models",
                    mlist,
                    "--batch-sizes",
                    f"1,{args.batch}",
                    "--json",
                    paths["infer"],
                    *bench_args,
                ],
                env,
                left(),
                log,
            )
        elif phase == "deploy":
            _run(
                [
                    py,
                    "-m",
                    "edgejax.bench",
                    "--models",
                    mlist,
                    "--batch-sizes",
                    "1",
                    "--deploy",
                    "--json",
                    paths["deploy"],
                    *bench_args,
                ],
                env,
                left(),
                log,
            )
            rep = [m for m in models if _reparameterised_by_timm(m)]
            if rep and left() > 15:
                extra = paths["deploy"] + ".b"
                _run(
                    [
                        py,
                        "-m",
                        "edgejax.bench",
                        "--models",
                        ",".join(rep),
                        "--batch-sizes",
                        str(args.batch),
                        "--deploy",
                        "--json",
                        extra,
                        *bench_args,
                    ],
                    env,
                    left(),
                    log,
                )
                merged = _load(paths["deploy"], {"records": []})
                merged["records"] += _load(extra, {}).get("records", [])
                with open(paths["deploy"], "w") as f:
                    json.dump(merged, f, indent=1)
                if os.path.exists(extra):
                    os.remove(extra)
        elif phase in ("train", "distill"):
            # the production train step; in the distill phase with a teacher inside it
            extra = ["--teacher", args.distill_teacher] if phase == "distill" else []
            _run(
                [
                    py,
                    os.path.join(HERE, "train_throughput.py"),
                    "--models",
                    mlist if phase == "train" else args.distill_students,
                    *extra,
                    "--batch",
                    str(args.batch),
                    "--size",
                    str(args.resolution),
                    "--dtype",
                    args.dtype,
                    "--steps",
                    str(args.train_steps),
                    "--json",
                    paths[phase],
                ],
                env,
                left(),
                log,
            )
        elif phase == "groups":
            _run(
                [
                    py,
                    os.path.join(HERE, "trial_groups.py"),
                    "--batch",
                    str(args.group_batch),
                    "--size",
                    str(args.resolution),
                    "--ks",
                    args.group_ks,
                    "--steps",
                    "10",
                    "--json",
                    paths["groups"],
                ],
                env,
                left(),
                log,
            )
        elif phase in ("timm", "timm-compile") and args.baseline:
            names = mlist if phase == "timm" else ""
            comp = "" if phase == "timm" else args.timm_compile
            if phase == "timm-compile" and not comp:
                continue
            with open(paths["timm"], "a") as f:
                cmd = [
                    args.torch_python,
                    args.baseline,
                    "--batch",
                    str(args.batch),
                    "--res",
                    str(args.resolution),
                    "--models",
                    names,
                    "--compile",
                    comp,
                    "--budget-s",
                    str(max(left() - 60, 1)),
                ]
                print(f"# $ {' '.join(cmd)}", flush=True)
                try:
                    rc = subprocess.run(
                        cmd, env=env, stdout=f, stderr=log, timeout=left()
                    ).returncode
                except subprocess.TimeoutExpired:
                    rc = None
                print(f"#   rc {rc} after {time.time() - t0:.0f} s", flush=True)
        ran[phase] = round(time.time() - t0, 1)

    pre = _load(paths["precompile"], [])
    precompiled = {
        (r["kind"], r["model"], r["batch"] if r["kind"] == "infer" else None, r["deploy"]): r.get(
            "compile_s"
        )
        for r in pre
        if "error" not in r
    }
    infer = _load(paths["infer"], {}).get("records", [])
    deploy = _load(paths["deploy"], {}).get("records", [])
    train = _load(paths["train"], [])
    groups = _load(paths["groups"], [])
    distill = _load(paths["distill"], [])
    eager, compiled = _timm_records(paths["timm"])
    env_rec = _load(paths["infer"], {}).get("environment") or _load(paths["deploy"], {}).get(
        "environment"
    )
    with open(paths["suite"], "w") as f:
        json.dump(
            dict(
                environment=env_rec,
                phases_s=ran,
                precompile=pre,
                infer=infer,
                deploy=deploy,
                train=train,
                groups=groups,
                distill=distill,
                timm_eager=eager,
                timm_compiled=compiled,
                args=vars(args),
            ),
            f,
            indent=1,
        )
    if env_rec:
        print(
            f"\n# {env_rec.get('device')} ({env_rec.get('backend')}), jax {env_rec.get('jax')}, "
            f"flax {env_rec.get('flax')}; {args.dtype}, {args.resolution} px"
        )
    print(f"# phases (s): {ran}; records in {out}")
    if args.precompile and pre:
        print(f"# compile s: cold compiles, {args.precompile} at a time")
    print(f"\n## Inference (timm: {args.baseline or 'not run'})\n")
    print(inference_table(infer, deploy, eager, args.batch, precompiled))
    if train:
        print("\n## Training, batch %d\n" % args.batch)
        print(training_table(train, eager, compiled, precompiled))
    if groups:
        from trial_groups import table as groups_table

        print(f"\n## Trial groups, batch {args.group_batch}\n")
        print(groups_table(groups))
    if distill:
        print(f"\n## Online distillation, batch {args.batch}\n")
        print(distill_table(distill, train))
    return 0


if __name__ == "__main__":
    sys.exit(main())
