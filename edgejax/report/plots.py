"""PNG plots (matplotlib, Agg): curves per run and per study, confusion matrix, accuracy vs
latency with the Pareto front, Optuna parameter importances and optimisation history."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .runs import RunRecord, StudyRecord

__all__ = [
    "plot_run_curves",
    "plot_study_curves",
    "plot_confusion",
    "plot_pareto",
    "plot_importances",
    "plot_history",
]

DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def plot_run_curves(run: RunRecord, path: Path) -> Path | None:
    """Top-1 / top-5 (and EMA) and train / eval loss against epoch."""
    if not run.evals and not run.trains:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ep = [r.get("epoch", 0) for r in run.evals]
    for key, style in (("top1", "-o"), ("top5", "--o"), ("ema_top1", "-s")):
        ys = [r.get(key) for r in run.evals]
        if any(y is not None for y in ys):
            ax1.plot(ep, ys, style, ms=3, label=key)
    ax1.set_xlabel("epoch"), ax1.set_ylabel("accuracy (%)"), ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    tr = [
        (r.get("epoch"), r.get("loss"))
        for r in run.trains
        if r.get("epoch") is not None and isinstance(r.get("loss"), (int, float))
    ]
    if tr:
        ax2.plot(*zip(*tr), "-", lw=1, label="train loss")
    ev = [(r.get("epoch"), r.get("loss")) for r in run.evals if isinstance(r.get("loss"), float)]
    if ev:
        ax2.plot(*zip(*ev), "-o", ms=3, label="eval loss")
    ax2.set_xlabel("epoch"), ax2.set_ylabel("loss"), ax2.grid(alpha=0.3), ax2.legend(fontsize=8)
    fig.suptitle(f"{run.name} ({run.model})", fontsize=10)
    return _save(fig, path)


def plot_study_curves(study: StudyRecord, path: Path) -> Path | None:
    """Every trial's top-1 against epoch on one plot (pruned trials dashed)."""
    runs = [r for r in study.runs if r.evals]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        from edgejax.sweep.study import score_of

        label = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.params.items()
        )
        ax.plot(
            [e.get("epoch") for e in r.evals],
            [score_of(e, "top1") for e in r.evals],
            "--" if r.state == "pruned" else "-",
            marker="o",
            ms=3,
            label=f"#{r.number} {label}"[:60],
        )
    ax.set_xlabel("epoch"), ax.set_ylabel("top-1 (%, best of raw / EMA)"), ax.grid(alpha=0.3)
    ax.set_title(study.name, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_confusion(
    labels: np.ndarray, preds: np.ndarray, class_names: list[str], path: Path, title: str = ""
) -> Path:
    n = len(class_names)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (labels, preds), 1)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    plt = _plt()
    size = min(3 + 0.45 * n, 12)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    acc = 100.0 * np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} (top-1 {acc:.2f}%, n={cm.sum()})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of (latency, accuracy) points no other point beats on both (lower, higher)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(items: list[tuple[str, float, float]], path: Path, xlabel: str) -> Path | None:
    """``items``: (model, latency ms, top-1). Scatter with the Pareto front drawn."""
    if not items:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pts = [(x, y) for _, x, y in items]
    ax.scatter(*zip(*pts), s=25)
    for name, x, y in items:
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(pts)
    ax.plot(
        [pts[i][0] for i in front], [pts[i][1] for i in front], "r--", lw=1, label="Pareto front"
    )
    ax.set_xscale("log"), ax.set_xlabel(xlabel), ax.set_ylabel("top-1 (%)")
    ax.grid(alpha=0.3, which="both"), ax.legend(fontsize=8)
    return _save(fig, path)


def plot_importances(importances: dict[str, float], path: Path, title: str) -> Path | None:
    if not importances:
        return None
    plt = _plt()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 1.8 + 0.4 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA)"), ax.set_title(title, fontsize=10)
    ax.set_xlim(0, 1), ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def plot_history(study: StudyRecord, path: Path) -> Path | None:
    """Objective value per trial (pruned: last reported value) and the best so far."""
    runs = [r for r in study.runs if r.number is not None]
    if not runs:
        return None
    from edgejax.sweep.study import score_of

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    minimize = study.metric == "loss"
    best, xs, bests = None, [], []
    for state, marker, color in (
        ("complete", "o", "tab:blue"),
        ("pruned", "x", "tab:orange"),
        ("failed", "v", "tab:red"),
    ):
        sel = [r for r in runs if r.state == state]
        vals = []
        for r in sel:
            b = r.best(study.metric)
            vals.append(score_of(b, study.metric) if b else (0 if state == "failed" else None))
        pts = [(r.number, v) for r, v in zip(sel, vals) if v is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=color, label=state, s=28)
    for r in sorted(runs, key=lambda r: r.number):
        if r.state != "complete":
            continue
        v = score_of(r.best(study.metric), study.metric) if r.best(study.metric) else None
        if v is None:
            continue
        best = v if best is None else (min(best, v) if minimize else max(best, v))
        xs.append(r.number), bests.append(best)
    if xs:
        ax.step(xs, bests, where="post", color="tab:green", label="best so far")
    ax.set_xlabel("trial"), ax.set_ylabel(study.metric), ax.grid(alpha=0.3)
    ax.set_title(f"{study.name}: optimisation history", fontsize=10), ax.legend(fontsize=8)
    return _save(fig, path)
