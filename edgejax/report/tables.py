"""Markdown tables in the study's shape: runs, baseline vs optimized, the cumulative augmentation
stack, every study's trials, and deployment figures from ``edgejax.bench`` JSON."""

from __future__ import annotations

import json
from pathlib import Path

from .runs import RunRecord, StudyRecord, recipe_of

__all__ = [
    "markdown_table",
    "runs_table",
    "recipe_table",
    "augment_table",
    "trials_table",
    "bench_table",
    "load_bench",
    "best_by_model",
]


def _f(v, nd=2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_f(v) if not isinstance(v, str) else v for v in r) + " |")
    return "\n".join(lines)


def runs_table(runs: list[RunRecord]) -> str:
    rows = []
    for r in runs:
        rows.append(
            [
                r.name,
                r.model,
                recipe_of(r.config),
                _f(r.epochs, 1),
                r.top1,
                r.top5,
                _f(r.time_s, 0),
                r.state,
            ]
        )
    return markdown_table(
        ["run", "model", "recipe", "epochs", "top-1", "top-5", "time (s)", "state"], rows
    )


def best_by_model(runs: list[RunRecord]) -> dict[str, RunRecord]:
    out: dict[str, RunRecord] = {}
    for r in runs:
        if r.top1 is not None and (r.model not in out or r.top1 > out[r.model].top1):
            out[r.model] = r
    return out


def recipe_table(runs: list[RunRecord]) -> str | None:
    """Baseline vs optimized top-1 / top-5 per model (the best run of each recipe)."""
    cells: dict[str, dict[str, RunRecord]] = {}
    for r in runs:
        if r.top1 is None or r.state == "failed":
            continue
        recipe = recipe_of(r.config)
        if recipe not in ("baseline", "optimized"):
            continue
        slot = cells.setdefault(r.model, {})
        if recipe not in slot or r.top1 > slot[recipe].top1:
            slot[recipe] = r
    if not cells:
        return None
    rows = []
    for model, slot in sorted(cells.items()):
        b, o = slot.get("baseline"), slot.get("optimized")
        delta = (o.top1 - b.top1) if (b and o) else None
        rows.append(
            [
                model,
                b.top1 if b else None,
                b.top5 if b else None,
                o.top1 if o else None,
                o.top5 if o else None,
                None if delta is None else f"{delta:+.2f}",
            ]
        )
    return markdown_table(
        [
            "model",
            "baseline top-1",
            "baseline top-5",
            "optimized top-1",
            "optimized top-5",
            "Δ top-1",
        ],
        rows,
    )


def _stack_param(study: StudyRecord):
    for p in study.sweep.get("space", []):
        if p.get("type") == "presets" and "augment" in p.get("name", ""):
            return p
    return None


def augment_table(studies: list[StudyRecord]) -> str | None:
    """The cumulative augmentation table: one row per stack step (in the sweep's order), with the
    change against the step before and against the baseline; one block per model."""
    blocks = []
    for study in studies:
        p = _stack_param(study)
        if p is None:
            continue
        by_label = {}
        for r in study.runs:
            v = r.params.get(p["name"])
            if v is not None and r.top1 is not None and r.state != "failed":
                if v not in by_label or r.top1 > by_label[v].top1:
                    by_label[v] = r
        if not by_label:
            continue
        model = next(iter(by_label.values())).model
        rows, prev, base = [], None, None
        for label in p["choices"]:
            r = by_label.get(label)
            if r is None:
                rows.append([model, label, None, None, "–", "–", "–", "not run"])
                continue
            base = r.top1 if base is None else base
            d_prev = "–" if prev is None else f"{r.top1 - prev:+.2f}"
            d_base = "–" if label == p["choices"][0] else f"{r.top1 - base:+.2f}"
            rows.append([model, label, r.top1, r.top5, d_prev, d_base, _f(r.epochs, 1), r.state])
            prev = r.top1
        blocks.append(rows)
    if not blocks:
        return None
    return markdown_table(
        [
            "model",
            "augmentation (cumulative)",
            "top-1",
            "top-5",
            "Δ vs previous",
            "Δ vs baseline",
            "epochs",
            "state",
        ],
        [r for b in blocks for r in b],
    )


def trials_table(study: StudyRecord) -> str:
    names = [p["name"] for p in study.sweep.get("space", [])] or sorted(
        {k for r in study.runs for k in r.params}
    )
    rows = []
    for r in study.runs:
        b = r.best()
        rows.append(
            [str(r.number), r.state]
            + [
                _f(r.params.get(n), 4)
                if isinstance(r.params.get(n), float)
                else _f(r.params.get(n))
                for n in names
            ]
            + [
                r.top1,
                r.top5,
                _f(b.get("epoch") if b else None, 1),
                _f(r.epochs, 1),
                _f(r.time_s, 0),
                (r.error or "")[:80].replace("|", "/"),
            ]
        )
    return markdown_table(
        ["trial", "state"]
        + names
        + ["top-1", "top-5", "best epoch", "epochs run", "time (s)", "error"],
        rows,
    )


_KEYS = {
    "model": ("model", "name", "model_name"),
    "batch": ("batch_size", "batch", "bs"),
    "latency": ("latency_ms_p50", "latency_p50_ms", "p50_ms", "latency_p50", "latency_ms"),
    "fps": ("throughput_img_s", "img_s", "images_per_s", "throughput", "fps"),
    "params": ("params_m", "params_M", "params", "num_params"),
    "gflops": ("gflops", "GFLOPs", "gmacs", "flops_g"),
    "size": ("size_mb", "size_MB", "model_size_mb"),
    "device": ("device", "backend", "platform"),
}


def _get(rec: dict, what: str):
    for k in _KEYS[what]:
        if k in rec and rec[k] is not None:
            return rec[k]
    for k, v in rec.items():  # nested {"latency": {"p50_ms": ..}}
        if isinstance(v, dict):
            got = _get(v, what) if what != "model" else None
            if got is not None:
                return got
    return None


def load_bench(paths) -> list[dict]:
    """Bench records (``python -m edgejax.bench --json``) as dicts with model, batch, latency
    (ms, p50), fps, params (millions), gflops, size (MB), device."""
    out = []
    for path in paths or ():
        data = json.loads(Path(path).read_text())
        recs = data.get("records", data.get("results", [])) if isinstance(data, dict) else data
        for rec in recs:
            row = {k: _get(rec, k) for k in _KEYS}
            if row["params"] is not None and row["params"] > 1e4:
                row["params"] = row["params"] / 1e6
            if row["model"] is not None:
                out.append(row)
    return out


def bench_table(bench: list[dict], runs: list[RunRecord]) -> str | None:
    if not bench:
        return None
    best = best_by_model(runs)
    rows = []
    for b in bench:
        r = best.get(b["model"])
        rows.append(
            [
                b["model"],
                _f(b["batch"]),
                b["device"] or "–",
                b["latency"],
                b["fps"],
                b["params"],
                b["gflops"],
                b["size"],
                r.top1 if r else None,
            ]
        )
    return markdown_table(
        [
            "model",
            "batch",
            "device",
            "latency p50 (ms)",
            "img/s",
            "params (M)",
            "GFLOPs",
            "size (MB)",
            "best top-1",
        ],
        rows,
    )
