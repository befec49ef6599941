"""Run the CIFAR-10 tuning study end to end and write docs/results/cifar10_study/.

    python tools/cifar10_study.py --out runs/cifar10_study --docs docs/results/cifar10_study

Steps (each resumes when re-run: the sweeps resume their studies, finished retrains are kept):

1. the data: ``tools/make_subset.py ../shared/data/cifar10 runs/data/cifar10_1k --train 100
   --val 100 --test 200`` (symbolic links; val carved from CIFAR-10's training images);
2. ``python -m edgejax.sweep --config configs/sweeps/cifar10_study.py:ablations --group-size 4``;
3. ``python -m edgejax.sweep --config configs/sweeps/cifar10_study.py:tpe --group-size 4``
   (24 trials), and the ablations again at 30 epochs (``--short-epochs``; 0 skips them);
4. retrains of the baseline, the best step of the augmentation stack and the TPE best with seeds
   0, 1, 2 (``python -m edgejax.train --config configs/cifar10_study.py:test``: trained on the
   same 1,000 images, evaluated on the 2,000 test images, never seen while tuning);
5. the tables and plots (train top-1 measured on the training images with the eval transform).
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
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
SEEDS = (0, 1, 2)
STACK = (
    "baseline",
    "+crops",
    "+randaugment",
    "+mixup",
    "+cutmix",
    "+label_smoothing",
    "+random_erasing",
)


def sh(cmd, log, run=True):
    """Log ``cmd`` (the report lists every command of the study) and run it unless ``run`` is
    False (a part skipped or already done); -> seconds it took."""
    log.append(" ".join(shlex.quote(_portable(c)) for c in cmd))
    if not run:
        return 0.0
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.time() - t0


def _portable(arg: str) -> str:
    """A command argument as a reader of the report types it: ``python``, repo-relative paths."""
    if arg == sys.executable:
        return "python"
    arg = arg.replace(REPO + os.sep, "")
    return (
        os.path.relpath(arg, REPO)
        if os.path.isabs(arg) and arg.startswith(os.path.dirname(REPO))
        else arg
    )


def ablation_order():
    """The recipes in the sweep config's order (baseline, one change each, the stack)."""
    from edgejax.sweep.config import load_sweep

    s = load_sweep(os.path.join(REPO, "configs/sweeps/cifar10_study.py:ablations"))
    return list(s.space[0]["options"])


def trials(study_dir):
    out = []
    root = os.path.join(study_dir, "trials")
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        p = os.path.join(root, name, "trial.json")
        if os.path.exists(p):
            t = json.load(open(p))
            t["workdir"] = os.path.join(root, name)
            out.append(t)
    return out


def evals(workdir):
    from edgejax.sweep import eval_records

    return eval_records(workdir)


def clean_top1(workdir, split, dataset):
    """top-1 of the run's final weights (its last checkpoint) on ``split``, eval transform."""
    from edgejax.infer import Classifier
    from edgejax.validate import validate

    cfg = json.load(open(os.path.join(workdir, "config.json")))
    clf = Classifier(cfg["model"]["name"], checkpoint=os.path.join(workdir, "checkpoints"))
    return validate(clf, dataset, split=split, batch_size=500)["top1"]


def retrain_flags(overrides: dict) -> list[str]:
    flags = []
    for k, v in overrides.items():
        if isinstance(v, list):  # tuples (crop scale / ratio) come back from JSON as lists
            v = tuple(v)
        flags.append(f"--config.{k}={json.dumps(v) if isinstance(v, bool) else v}")
    return [f.replace("=true", "=True").replace("=false", "=False") for f in flags]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/cifar10_study")
    p.add_argument("--docs", default="docs/results/cifar10_study")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--tpe-trials", type=int, default=24)
    p.add_argument("--skip-sweeps", action="store_true", help="only retrains and the report")
    p.add_argument(
        "--short-epochs",
        type=float,
        default=30.0,
        help="the ablations again at this shorter budget (0: not), for a column "
        "beside the full-length ones: what the budget does to the ranking",
    )
    a = p.parse_args(argv)
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    py = sys.executable
    log: list[str] = []
    # wall time of each part, summed over the commands that ran it (a resumed part adds up)
    wall_path = os.path.join(out, "wall.json")
    wall = json.load(open(wall_path)) if os.path.exists(wall_path) else {}

    def spent(part, seconds):
        wall[part] = wall.get(part, 0.0) + seconds
        with open(wall_path, "w") as f:
            json.dump(wall, f)

    subset = os.path.join(REPO, "runs", "data", "cifar10_1k")
    sh(
        [
            py,
            "tools/make_subset.py",
            a.data,
            subset,
            "--train",
            "100",
            "--val",
            "100",
            "--test",
            "200",
            "--seed",
            "0",
        ],
        log,
    )
    parts = [("ablations", "ablations", []), ("tpe", "tpe", ["--n-trials", str(a.tpe_trials)])]
    if a.short_epochs:
        parts.append(
            (
                "ablations",
                "ablations_short",
                ["--set", f"num_epochs={a.short_epochs}", "--set", "eval.every_epochs=2"],
            )
        )
    for part, name, extra in parts:
        d = os.path.join(out, name)
        spent(
            name,
            sh(
                [
                    py,
                    "-m",
                    "edgejax.sweep",
                    "--config",
                    f"configs/sweeps/cifar10_study.py:{part}",
                    "--study-dir",
                    d,
                    "--group-size",
                    str(a.group_size),
                    "--keep-checkpoints",
                    "all",
                    *extra,
                ],
                log,
                run=not a.skip_sweeps,
            ),
        )
    abl = {t["params"]["recipe"]: t for t in trials(os.path.join(out, "ablations"))}
    abl = {k: abl[k] for k in ablation_order() if k in abl}
    tpe = trials(os.path.join(out, "tpe"))
    stack = [s for s in STACK if s in abl and abl[s]["value"] is not None]
    best_stack = max(stack, key=lambda s: abl[s]["value"])
    done = [t for t in tpe if t["state"] in ("complete",) and t["value"] is not None]
    tpe_best = max(done, key=lambda t: t["value"])
    picks = {
        "baseline": abl["baseline"]["user_attrs"].get("overrides", {}),
        f"stack {best_stack}": abl[best_stack]["user_attrs"].get("overrides", {}),
        f"TPE best (trial {tpe_best['number']})": tpe_best["user_attrs"].get("overrides", {}),
    }
    retrain = {}
    t0 = time.time()
    for name, ov in picks.items():
        for seed in SEEDS:
            slug = name.split(" (")[0].replace(" ", "_").replace("+", "")
            w = os.path.join(out, "retrain", f"{slug}_s{seed}")
            done = (
                os.path.exists(os.path.join(w, "summary.json"))
                and json.load(open(os.path.join(w, "summary.json")))["status"] == "completed"
            )
            sh(
                [
                    py,
                    "-m",
                    "edgejax.train",
                    "--config",
                    "configs/cifar10_study.py:test",
                    "--workdir",
                    w,
                    f"--config.seed={seed}",
                    "--config.log.progress=False",
                    *retrain_flags({k: v for k, v in ov.items() if k != "recipe"}),
                ],
                log,
                run=not done,
            )
            s = json.load(open(os.path.join(w, "summary.json")))
            ev = s["last_eval"]
            # the final weights; the EMA weights where the recipe keeps an EMA (a fixed rule:
            # nothing is chosen on the test images)
            retrain.setdefault(name, []).append(
                {
                    "seed": seed,
                    "test_top1": ev.get("ema_top1", ev["top1"]),
                    "raw_top1": ev["top1"],
                    "time_s": s["time_s"],
                    "workdir": w,
                }
            )
    spent("retrain", time.time() - t0)
    # the baseline's fit: the final weights of its seed-0 retrain on the training images vs val
    base_w = retrain["baseline"][0]["workdir"]
    fit = {
        "train_top1": clean_top1(base_w, "train", subset),
        "val_top1": clean_top1(base_w, "val", subset),
    }
    short = {t["params"]["recipe"]: t for t in trials(os.path.join(out, "ablations_short"))}
    write_report(a.docs, out, abl, tpe, retrain, fit, best_stack, tpe_best, wall, log, short)
    return 0


def _machine():
    import jax
    from trial_groups import cpu_flags

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"({cpu_flags()}), jax {jax.__version__} ({jax.default_backend()})"
    )


def write_report(docs, out, abl, tpe, retrain, fit, best_stack, tpe_best, wall, log, short):
    short_epochs = next(iter(short.values()))["user_attrs"].get("epochs_done", 0) if short else 0
    import numpy as np

    os.makedirs(docs, exist_ok=True)
    base = abl["baseline"]["value"]
    lines = [
        "# What tuning buys: MobileNetV3-Small 1.0 on a 1,000-image CIFAR-10 subset",
        "",
        f"Measured {datetime.date.today().isoformat()} on {_machine()}; "
        f"wall time: ablations {wall.get('ablations', 0) / 60:.0f} min, TPE "
        f"{wall.get('tpe', 0) / 60:.0f} min, retrains {wall.get('retrain', 0) / 60:.0f} min"
        + (
            f", ablations at {short_epochs:g} epochs {wall['ablations_short'] / 60:.0f} min"
            if "ablations_short" in wall
            else ""
        )
        + " "
        "(trial groups of 4, sequential mode on CPU).",
        "",
        "Setup: `configs/cifar10_study.py` (MobileNetV3-Small 1.0 from scratch, 32 px, batch 64, "
        "AdamW lr 3e-3, wd 0.01, cosine, 60 epochs, horizontal flips only). 1,000 training images "
        "(100 per class) and a disjoint 1,000-image val split, both drawn from CIFAR-10's training "
        "set; every choice below was made on val. The test split (2,000 images from CIFAR-10's "
        "test set) is read only by the final retrains.",
        "",
        f"The baseline overfits: its final weights score {fit['train_top1']:.1f}% top-1 on the "
        f"training images and {fit['val_top1']:.1f}% on val (gap "
        f"{fit['train_top1'] - fit['val_top1']:.1f} points, eval transform for both).",
        "",
        "## Held-out test top-1, 3 seeds each",
        "",
        "Final weights after the last epoch (the EMA weights for a recipe with an EMA), on the "
        "2,000 test images; each recipe retrained with seeds 0, 1, 2 (initialisation, data "
        "order and augmentation draws).",
        "",
        "| recipe | test top-1 mean | range (min - max) | seeds | mean train time (s) |",
        "|---|---|---|---|---|",
    ]
    for name, rows in retrain.items():
        v = np.array([r["test_top1"] for r in rows])
        lines.append(
            f"| {name} | {v.mean():.2f} | {v.min():.2f} - {v.max():.2f} | "
            f"{', '.join(f'{x:.2f}' for x in v)} | "
            f"{np.mean([r['time_s'] for r in rows]):.0f} |"
        )
    lines += [
        "",
        "## Ablations (val top-1, best epoch; one change from the baseline, or the "
        "cumulative augmentation stack)",
        "",
        "| recipe | val top-1 | vs baseline | best epoch |"
        + (f" at {short_epochs:g} epochs: val top-1 | vs baseline | best epoch |" if short else ""),
        "|---|---|---|---|" + ("---|---|---|" if short else ""),
    ]
    sbase = short.get("baseline", {}).get("value")
    for name, t in abl.items():
        v = t["value"]
        ua = t["user_attrs"]
        row = f"| {name} | {v:.2f} | {v - base:+.2f} | {ua.get('best_epoch')} |"
        if short:
            st = short.get(name)
            row += (
                " - | - | - |"
                if st is None or st["value"] is None or sbase is None
                else f" {st['value']:.2f} | {st['value'] - sbase:+.2f} | "
                f"{st['user_attrs'].get('best_epoch')} |"
            )
        lines.append(row)
    lines += [
        "",
        f"Best step of the stack: **{best_stack}**.",
        "",
        f"## TPE search ({len(tpe)} trials, median pruning, groups of 4)",
        "",
        "| trial | state | val top-1 | epochs run | parameters |",
        "|---|---|---|---|---|",
    ]
    for t in sorted(tpe, key=lambda t: t["number"]):
        v = "-" if t["value"] is None else f"{t['value']:.2f}"
        params = ", ".join(
            f"{k}={(f'{x:.3g}' if isinstance(x, float) else x)}" for k, x in t["params"].items()
        )
        lines.append(
            f"| {t['number']} | {t['state']} | {v} | "
            f"{t['user_attrs'].get('epochs_done', '-')} | {params} |"
        )
    lines += ["", f"TPE best: trial {tpe_best['number']}, val top-1 {tpe_best['value']:.2f}.", ""]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2))
        names = list(abl)
        ax.barh(names, [abl[n]["value"] - base for n in names])
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("val top-1 vs baseline (points)")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(os.path.join(docs, "ablations.png"), dpi=90)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        vals = [(t["number"], t["value"]) for t in tpe if t["value"] is not None]
        ax.scatter([n for n, _ in vals], [v for _, v in vals], s=12)
        best = np.maximum.accumulate([v for _, v in sorted(vals)])
        ax.plot([n for n, _ in sorted(vals)], best, color="C1", label="best so far")
        ax.axhline(base, color="k", lw=0.8, ls="--", label="baseline")
        ax.set_xlabel("trial")
        ax.set_ylabel("val top-1")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(docs, "tpe_history.png"), dpi=90)
        lines += ["![ablations](ablations.png)", "", "![TPE history](tpe_history.png)", ""]
    except ImportError:
        pass
    lines += [
        "## Commands",
        "",
        "```",
        *log,
        "```",
        "",
        "Or all of it: `python tools/cifar10_study.py` (re-running resumes).",
        "",
    ]
    with open(os.path.join(docs, "README.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(docs, "results.json"), "w") as f:
        json.dump(
            {
                "retrain": {
                    k: [dict(r, workdir=_portable(r["workdir"])) for r in rows]
                    for k, rows in retrain.items()
                },
                "fit": fit,
                "best_stack": best_stack,
                "tpe_best": tpe_best["number"],
                "wall_s": wall,
                "ablations": {k: t["value"] for k, t in abl.items()},
                "tpe": [
                    {
                        "number": t["number"],
                        "state": t["state"],
                        "value": t["value"],
                        "params": t["params"],
                    }
                    for t in tpe
                ],
            },
            f,
            indent=1,
        )


if __name__ == "__main__":
    sys.exit(main())
