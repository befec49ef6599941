"""edgejax.report: Markdown tables and PNG plots from run and study directories.

    python -m edgejax.report runs/aug runs/baseline runs/optimized --bench bench.json --out report/

    from edgejax.report import build_report
    paths = build_report(["runs/aug"], "report/")

Pieces: ``runs`` (reading runs and studies back), ``tables``, ``plots``, ``predict`` (predictions
of a run's best checkpoint, for the confusion matrix).
"""

from __future__ import annotations

import json
from pathlib import Path

from .runs import RunRecord, StudyRecord, load_dirs, recipe_of, slug
from .tables import (
    augment_table,
    bench_table,
    best_by_model,
    load_bench,
    recipe_table,
    runs_table,
    trials_table,
)

__all__ = ["build_report", "load_dirs", "RunRecord", "StudyRecord", "recipe_of"]


def _importances(study: StudyRecord) -> dict[str, float]:
    s = study.optuna_study
    if s is None:
        return {}
    import optuna

    done = [t for t in s.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2 or not any(t.params for t in done):
        return {}
    try:
        return dict(optuna.importance.get_param_importances(s))
    except Exception:  # e.g. every trial took the same values
        return {}


def build_report(
    dirs,
    out,
    *,
    bench=(),
    storage: str | None = None,
    confusion: str | None = "best",
    title: str = "edgejax report",
    log=print,
) -> dict:
    """Write ``<out>/README.md`` (tables, with the plots linked) and PNGs. Returns
    {"markdown": path, "plots": [paths], "tables": {name: markdown}}.

    ``confusion``: a run directory, "best" (the best run that has a checkpoint) or None.
    """
    from . import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, studies = load_dirs(dirs, storage)
    all_runs = runs + [r for s in studies for r in s.runs]
    bench_rows = load_bench(bench)
    tables: dict[str, str] = {}
    made: list[Path] = []
    md = [f"# {title}", ""]
    md.append(
        f"Sources: {', '.join(str(d) for d in dirs)}"
        + (f"; bench: {', '.join(str(b) for b in bench)}" if bench else "")
    )
    md.append("")

    def add_plot(path, caption):
        if path is not None:
            made.append(path)
            md.append(f"![{caption}]({path.relative_to(out).as_posix()})")
            md.append("")

    t = recipe_table(all_runs)
    if t:
        tables["recipes"] = t
        md += ["## Baseline vs optimized", "", t, ""]
    t = augment_table(studies)
    if t:
        tables["augment"] = t
        md += ["## Cumulative augmentation", "", t, ""]
    t = bench_table(bench_rows, all_runs)
    if t:
        tables["bench"] = t
        md += ["## Deployment (edgejax.bench)", "", t, ""]
        best = best_by_model(all_runs)
        items = []
        for b in bench_rows:
            r = best.get(b["model"])
            if r is not None and b["latency"]:
                items.append((f"{b['model']} (bs {b['batch']})", float(b["latency"]), r.top1))
        add_plot(
            plots.plot_pareto(items, out / "pareto.png", "latency p50 (ms)"), "accuracy vs latency"
        )
    for study in studies:
        sec = ["## Study " + study.name, ""]
        desc = study.sweep.get("description")
        if desc:
            sec += [desc, ""]
        sw = study.sweep
        sec += [
            f"Base `{Path(sw.get('base', '?')).name}`; sampler {sw.get('sampler')}, pruner "
            f"{sw.get('pruner')}, metric {study.metric}; overrides: "
            + (
                ", ".join(
                    f"`{k}={v}`"
                    for k, v in list(sw.get("fixed", [])) + list(sw.get("overrides", []))
                )
                or "none"
            ),
            "",
        ]
        t = trials_table(study)
        tables[f"trials:{study.name}"] = t
        md += sec + [t, ""]
        add_plot(
            plots.plot_study_curves(study, out / f"{slug(study.name)}_curves.png"),
            f"{study.name}: top-1 per epoch",
        )
        add_plot(
            plots.plot_history(study, out / f"{slug(study.name)}_history.png"),
            f"{study.name}: optimisation history",
        )
        imp = _importances(study)
        if imp:
            tables[f"importance:{study.name}"] = "\n".join(f"{k}: {v:.3f}" for k, v in imp.items())
            add_plot(
                plots.plot_importances(
                    imp,
                    out / f"{slug(study.name)}_importance.png",
                    f"{study.name}: parameter importance",
                ),
                f"{study.name}: parameter importances",
            )
    if all_runs:
        t = runs_table(all_runs)
        tables["runs"] = t
        md += ["## All runs", "", t, ""]
        md += ["## Curves", ""]
        for r in all_runs:
            add_plot(
                plots.plot_run_curves(r, out / "curves" / f"{slug(r.name)}.png"),
                f"{r.name}: accuracy and loss",
            )
    if confusion:
        target = None
        if confusion == "best":
            cands = [r for r in all_runs if r.top1 is not None and (r.path / "best").exists()]
            target = max(cands, key=lambda r: r.top1) if cands else None
        else:
            p = Path(confusion).absolute()
            target = next((r for r in all_runs if r.path.absolute() == p), None)
            if target is None:
                from .runs import load_run

                target = load_run(p)
        if target is not None:
            from .predict import load_or_predict

            try:
                pred = load_or_predict(target.path, cache_dir=out)
                md += [
                    "## Confusion matrix",
                    "",
                    f"Run {target.name} (`{target.path}`), best checkpoint on its evaluation "
                    f"split.",
                    "",
                ]
                add_plot(
                    plots.plot_confusion(
                        pred["labels"],
                        pred["preds"],
                        pred["class_names"],
                        out / f"confusion_{slug(target.name)}.png",
                        target.name,
                    ),
                    "confusion matrix",
                )
            except Exception as e:  # a report without the matrix beats no report
                log(
                    f"edgejax.report: no confusion matrix for {target.path}: "
                    f"{type(e).__name__}: {e}"
                )
                md += ["## Confusion matrix", "", f"Not made: {type(e).__name__}: {e}", ""]
    path = out / "README.md"
    path.write_text("\n".join(md))
    with open(out / "tables.json", "w") as f:
        json.dump(tables, f, indent=2)
    return {"markdown": path, "plots": made, "tables": tables}
