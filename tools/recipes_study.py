"""Run the CIFAR-10 recipes study end to end and write docs/results/recipes_cpu.md: knowledge
distillation (a student alone vs distilled from a trained teacher) and progressive learning (a
fixed image size vs three growing stages), 3 seeds per arm, on the CPU.

    python tools/recipes_study.py --out runs/recipes --docs docs/results/recipes_cpu.md

Steps (re-running resumes: a run whose summary.json says completed is kept, others run again):

1. the data: ``tools/make_subset.py ../shared/data/cifar10 runs/data/cifar10_5k --train 500
   --val 50 --test 200 --seed 0`` (symbolic links);
2. the teacher: ``python -m edgejax.train --config configs/cifar10_recipes.py:teacher
   --workdir runs/recipes/teacher``;
3. the four arms (``student``, ``student_kd``, ``fixed``, ``progressive``) with seeds 0, 1, 2,
   seed by seed, so that a study cut short has the same seeds in every arm;
4. the report, from the runs' ``summary.json`` and ``metrics.jsonl`` (``--report-only`` writes
   it from whatever has finished, listing the runs that have not).

Each run's output goes to ``<out>/logs/<run>.log``. The runs share a persistent compilation cache
(``JAX_COMPILATION_CACHE_DIR``, default ``<out>/jax_cache``): seeds 1 and 2 of an arm load the
programs seed 0 compiled.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/cifar10_recipes.py"
ARMS = ("student", "student_kd", "fixed", "progressive")
SUBSET = ["--train", "500", "--val", "50", "--test", "200", "--seed", "0"]


def _portable(arg: str) -> str:
    """A command argument as a reader of the report types it: ``python``, repo-relative paths."""
    if arg == sys.executable:
        return "python"
    if os.path.isabs(arg) and arg.startswith(os.path.dirname(REPO)):
        return os.path.relpath(arg, REPO)
    return arg


def sh(cmd, log, logfile=None, run=True, env=None):
    """Log ``cmd`` (the report lists every command) and run it unless ``run`` is False (already
    done); -> seconds it took."""
    log.append(" ".join(shlex.quote(_portable(c)) for c in cmd))
    if not run:
        return 0.0
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    if logfile is None:
        subprocess.run(cmd, check=True, cwd=REPO)
    else:
        with open(logfile, "a") as f:
            r = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
        if r.returncode:
            raise SystemExit(f"exit {r.returncode}: {' '.join(cmd)} (log: {logfile})")
    return time.time() - t0


def summary(workdir):
    p = os.path.join(workdir, "summary.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        s = json.load(f)
    return s if s.get("status") == "completed" else None


def read_metrics(workdir):
    """A run's ``metrics.jsonl``: every row, the train rows, the times of the evaluations."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r["time"] for r in rows if r["kind"] == "eval"]
    return rows, train, evals


def train_intervals(train, evals, batch):
    """(first step, last step, train images/s) of each logged interval (``log.every_steps``
    steps apart) that holds no evaluation. The few that hold a compilation (a progressive
    stage's first step) are outliers a median over them ignores."""
    ivs = []
    for a, b in zip(train, train[1:]):
        if any(a["time"] < t <= b["time"] for t in evals) or b["step"] <= a["step"]:
            continue
        ivs.append(
            (a["step"], b["step"], (b["step"] - a["step"]) * batch / (b["time"] - a["time"]))
        )
    return ivs


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return None
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def collect(workdir):
    s = summary(workdir)
    if s is None:
        return None
    with open(os.path.join(workdir, "config.json")) as f:
        cfg = json.load(f)
    batch = cfg["global_batch_size"]
    rows, train, evals = read_metrics(workdir)
    ivs = train_intervals(train, evals, batch)
    out = {
        "test_top1": s["last_eval"]["top1"],
        "best_top1": s["best_top1"],
        "best_epoch": s["best_epoch"],
        "time_s": s["time_s"],
        "compile_s": s["compile_s"],
        "train_programs": s.get("train_programs"),
        "img_s": _median([r for _, _, r in ivs]),
        # top-1 of the last logged train batches (augmented, a mean over log.every_steps)
        "train_top1_last": 100 * train[-1]["top1"] if train else None,
        # every evaluation on the test images: (epoch, top-1, loss)
        "evals": [(r["epoch"], r["top1"], r["loss"]) for r in rows if r["kind"] == "eval"],
        "workdir": _portable(workdir),
    }
    if s.get("stages"):
        stage_rates = []
        for st in s["stages"]:
            lo, hi = st["steps"]
            stage_rates.append(_median([r for a, b, r in ivs if a >= lo and b <= hi]))
        out["stages"] = s["stages"]
        out["stage_img_s"] = stage_rates
        # the whole run's train throughput: images over the summed per-stage train time
        imgs = [(st["steps"][1] - st["steps"][0]) * st["batch_size"] for st in s["stages"]]
        if all(stage_rates):
            out["img_s"] = sum(imgs) / sum(n / r for n, r in zip(imgs, stage_rates))
    return out


def _machine():
    import jax

    from edgejax.bench import cpu_flags

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return model, os.cpu_count(), " ".join(cpu_flags()), jax.__version__, jax.default_backend()


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def _arm_row(name, rows, seeds):
    got = [r for r in rows if r is not None]

    def each(key, spec):
        return ", ".join(
            format(r[key], spec) if r is not None else f"(seed {s} missing)"
            for s, r in zip(seeds, rows)
        )

    if not got:
        return f"| {name} | - | - | {each('test_top1', '.2f')} | - | - | - |"
    v = [r["test_top1"] for r in got]
    b = [r["best_top1"] for r in got]
    wall = ", ".join(f"{r['time_s'] / 60:.1f}" if r else "-" for r in rows)
    return (
        f"| {name} | {sum(v) / len(v):.2f} | {min(v):.2f} - {max(v):.2f} | "
        f"{each('test_top1', '.2f')} | {sum(b) / len(b):.2f} | "
        f"{wall} | "
        f"{_fmt(_median([r['img_s'] for r in got if r['img_s']]), '.0f')} |"
    )


def _eval_table(arms):
    """Test top-1 (and loss) at each evaluation, mean over the finished seeds of each arm."""
    lines = []
    for name, rows in arms:
        got = [r for r in rows if r is not None]
        if not got:
            continue
        epochs = [e for e, _, _ in got[0]["evals"]]
        if not lines:
            lines = [
                "| arm | " + " | ".join(f"epoch {e:g}" for e in epochs) + " |",
                "|---|" + "---|" * len(epochs),
            ]
        cells = []
        for i in range(len(epochs)):
            t = [r["evals"][i][1] for r in got if len(r["evals"]) > i]
            lo = [r["evals"][i][2] for r in got if len(r["evals"]) > i]
            cells.append(f"{sum(t) / len(t):.2f} (loss {sum(lo) / len(lo):.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_report(path, res, seeds, log, wall, missing):
    model, ncpu, flags, jax_version, backend = _machine()
    teacher = res.get("teacher")
    today = datetime.date.today().isoformat()
    total_min = sum(wall.values()) / 60

    def cfg(part):
        from edgejax.train.config import validate

        sys.path.insert(0, os.path.join(REPO, "configs"))
        import importlib

        mod = importlib.import_module("cifar10_recipes")
        return validate(mod.get_config(part))

    t_cfg, s_cfg, kd_cfg, f_cfg, p_cfg = (cfg(p) for p in ("teacher",) + ARMS)
    lines = [
        "# Distillation and progressive learning on a CPU: CIFAR-10, 5,000 images",
        "",
        f"Measured {today} on a {ncpu}-CPU machine ({model}; CPU flags: {flags}), "
        f"jax {jax_version} ({backend}), float32, on a machine shared with other work (wall "
        f"times are indicative). Training wall time of the whole study: {total_min:.0f} min.",
        "",
        "Setup: `configs/cifar10_recipes.py`. 5,000 training images (500 per class) from "
        "CIFAR-10's training set, evaluated on 2,000 held-out images from its test set (200 per "
        "class; nothing was tuned on them). Common recipe: AdamW, lr 2e-3 at batch 128, weight "
        "decay 0.05, 1 warmup epoch then cosine decay, random-resized crops (scale 0.35-1) and "
        "flips, label smoothing 0.1. Each arm is trained with seeds "
        f"{', '.join(str(s) for s in seeds)} (`--config.seed`; `data.seed` = -1, so "
        "initialisation, data order and augmentation draws all follow the seed). Test top-1 is "
        "that of the final weights (`last_eval` in `summary.json`); best is the best of the "
        "periodic evaluations, on the same test images, so it is optimistic and shown only "
        "beside it. The epochs were sized so that the 13 runs fit in about an hour on this "
        "machine, from the throughput of 2-epoch trial runs; they are short budgets.",
        "",
        "## Knowledge distillation",
        "",
        f"Teacher: {t_cfg.model.name}, {t_cfg.num_epochs:g} epochs at "
        f"{t_cfg.data.image_size} px, evaluated once at the end (so the weights the student "
        "reads are the final ones, not a checkpoint picked on the test images): "
        + (
            f"test top-1 **{teacher['test_top1']:.2f}**, {teacher['time_s'] / 60:.1f} min "
            f"({teacher['img_s']:.0f} train img/s)."
            if teacher
            else "not finished (missing)."
        ),
        "",
        f"Student: {s_cfg.model.name}, {s_cfg.num_epochs:g} epochs at "
        f"{s_cfg.data.image_size} px, alone or distilled (T = {kd_cfg.distill.temperature:g}, "
        f"alpha = {kd_cfg.distill.alpha:g}: loss = {1 - kd_cfg.distill.alpha:.1f} x label loss + "
        f"{kd_cfg.distill.alpha:g} x T^2 KL(teacher || student); one setting, chosen before any "
        "run). The teacher runs in eval mode inside the student's train step on the same "
        "augmented batch.",
        "",
        "| arm | test top-1 mean | range (min - max) | per seed | best top-1 mean | "
        "wall min per seed | train img/s |",
        "|---|---|---|---|---|---|---|",
        _arm_row("student alone", res["student"], seeds),
        _arm_row("student distilled", res["student_kd"], seeds),
        "",
        "Top-1 on the last logged training batches (augmented; a mean over 10 steps), per "
        "seed: student alone "
        + ", ".join(_fmt(r and r["train_top1_last"], ".1f") for r in res["student"])
        + "; distilled "
        + ", ".join(_fmt(r and r["train_top1_last"], ".1f") for r in res["student_kd"])
        + ".",
        "",
        "Test top-1 (and loss) at each evaluation, mean over seeds:",
        "",
        *_eval_table([("student alone", res["student"]), ("student distilled", res["student_kd"])]),
        "",
        "## Progressive learning",
        "",
        f"{f_cfg.model.name}, {f_cfg.num_epochs:g} epochs, evaluated at "
        f"{f_cfg.data.image_size} px (CIFAR-10 upsampled), RandAugment "
        f"({f_cfg.augment.ra_num_ops} ops, magnitude {f_cfg.augment.ra_magnitude:g}). Fixed: "
        f"every epoch at {f_cfg.data.image_size} px. Progressive: {p_cfg.progressive.stages} "
        f"stages of equal epochs, the image size growing from {p_cfg.progressive.start_size} px "
        f"and the RandAugment magnitude from {p_cfg.progressive.start_ra_magnitude:g} to the "
        "fixed run's values (EfficientNetV2's recipe; same batch size and learning-rate "
        "schedule throughout).",
        "",
        "| arm | test top-1 mean | range (min - max) | per seed | best top-1 mean | "
        "wall min per seed | train img/s |",
        "|---|---|---|---|---|---|---|",
        _arm_row(f"fixed {f_cfg.data.image_size} px", res["fixed"], seeds),
        _arm_row("progressive", res["progressive"], seeds),
        "",
        "Test top-1 (and loss) at each evaluation (always at the final size), mean over seeds:",
        "",
        *_eval_table(
            [
                (f"fixed {f_cfg.data.image_size} px", res["fixed"]),
                ("progressive", res["progressive"]),
            ]
        ),
        "",
    ]
    prog = [(sd, r) for sd, r in zip(seeds, res["progressive"]) if r and r.get("stages")]
    if prog:
        fixed = [(sd, r) for sd, r in zip(seeds, res["fixed"]) if r is not None]
        lines += [
            "Train img/s is the median over the logged 10-step intervals that hold no "
            "evaluation or compilation (progressive: per stage, combined over the run's "
            "images); the arm's figure is the median over its seeds. Each progressive run "
            f"compiled {prog[0][1]['train_programs']} train programs, one per stage. Train "
            "img/s per stage and seed (the fixed runs' beside them):",
            "",
            "| stage | epochs | image size | " + " | ".join(f"seed {sd}" for sd, _ in prog) + " |",
            "|---|---|---|" + "---|" * len(prog),
        ]
        for i, st in enumerate(prog[0][1]["stages"]):
            lines.append(
                f"| {i + 1} | {st['epochs'][0]:g} - {st['epochs'][1]:g} | "
                f"{st['image_size']} | "
                + " | ".join(_fmt(r["stage_img_s"][i], ".0f") for _, r in prog)
                + " |"
            )
        if fixed:
            lines.append(
                f"| fixed | all | {f_cfg.data.image_size} | "
                + " | ".join(
                    _fmt(dict(fixed).get(sd, {}).get("img_s") if sd in dict(fixed) else None, ".0f")
                    for sd, _ in prog
                )
                + " |"
            )
        lines.append("")
    comp = [
        f"{arm} {', '.join(_fmt(r and r['compile_s'], '.0f') for r in res[arm])}" for arm in ARMS
    ]
    lines += [
        "Wall time per run is the whole `edgejax.train` run (`time_s`: compilation, training, "
        "evaluations, checkpoints) on a machine other work was loading, so it varies between "
        "seeds of one arm. The study's runs share a persistent "
        "compilation cache: the first seed of an arm compiles its programs, the next ones "
        "load them (`compile_s`, the time to the end of the first train step, per seed: "
        + "; ".join(comp)
        + " s).",
        "",
    ]
    if missing:
        lines += [
            "## Missing runs",
            "",
            "Not finished when this file was written (their rows above list what finished): "
            + ", ".join(f"`{m}`" for m in missing)
            + ".",
            "",
        ]
    lines += [
        "## Reading",
        "",
        "READING",
        "",
        "## Commands",
        "",
        "```",
        *log,
        "```",
        "",
        "Or all of it: `python tools/recipes_study.py` (re-running resumes; `--report-only` "
        "rewrites this file from the finished runs). Per-run figures: `results.json` beside "
        "the runs (`runs/recipes/`, not committed).",
        "",
    ]
    text = "\n".join(lines)
    # keep a reading written by hand under "## Reading" when the file is rewritten
    if os.path.exists(path):
        old = open(path).read()
        if "## Reading\n" in old:
            reading = old.split("## Reading\n", 1)[1].split("\n## ", 1)[0].strip()
            if reading and reading != "READING":
                text = text.replace("READING", reading)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/recipes")
    p.add_argument("--docs", default="docs/results/recipes_cpu.md")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument(
        "--report-only", action="store_true", help="run nothing; write the report from the runs"
    )
    a = p.parse_args(argv)
    out = os.path.abspath(a.out)
    seeds = [int(s) for s in a.seeds.split(",")]
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    py = sys.executable
    log: list[str] = []
    run = not a.report_only
    wall_path = os.path.join(out, "wall.json")
    wall = json.load(open(wall_path)) if os.path.exists(wall_path) else {}

    def spent(name, seconds):
        if seconds:
            wall[name] = wall.get(name, 0.0) + seconds
            with open(wall_path, "w") as f:
                json.dump(wall, f, indent=1)

    # one persistent compilation cache for the study: a seed's run reuses the programs an
    # earlier seed of its arm compiled (the same shapes), as edgejax.sweep's trials do
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(out, "jax_cache"))
    subset = os.path.join(REPO, "runs", "data", "cifar10_5k")
    sh([py, "tools/make_subset.py", a.data, subset, *SUBSET], log, run=run)

    def train(part, workdir, extra=()):
        done = summary(workdir) is not None
        cmd = [py, "-m", "edgejax.train", "--config", f"{CONFIG}:{part}", "--workdir", workdir]
        cmd += [*extra, "--config.log.progress=False"]
        name = os.path.basename(workdir)
        logfile = os.path.join(out, "logs", name + ".log")
        spent(name, sh(cmd, log, logfile, run=run and not done, env=env))

    teacher_dir = os.path.join(out, "teacher")
    # the config names the teacher's run as runs/recipes/teacher; another --out says its own
    kd_extra = (
        []
        if os.path.relpath(teacher_dir, REPO) == "runs/recipes/teacher"
        else [f"--config.distill.checkpoint={_portable(teacher_dir)}"]
    )
    train("teacher", teacher_dir)
    for seed in seeds:
        for arm in ARMS:
            extra = [f"--config.seed={seed}"] + (kd_extra if arm == "student_kd" else [])
            train(arm, os.path.join(out, f"{arm}_s{seed}"), extra)

    res = {"teacher": collect(teacher_dir)}
    missing = [] if res["teacher"] else ["teacher"]
    for arm in ARMS:
        res[arm] = [collect(os.path.join(out, f"{arm}_s{s}")) for s in seeds]
        missing += [f"{arm}_s{s}" for s, r in zip(seeds, res[arm]) if r is None]
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"results": res, "wall_s": wall, "missing": missing}, f, indent=1)
    write_report(a.docs, res, seeds, log, wall, missing)
    print(f"wrote {a.docs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
