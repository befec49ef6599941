"""Reading runs (training workdirs) and studies (sweep directories) back from disk / storage."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgejax.sweep.study import read_metrics, score_of

__all__ = ["RunRecord", "StudyRecord", "load_dirs", "recipe_of", "slug"]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "run"


def _json(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


@dataclass
class RunRecord:
    """One training run: its config, evaluation / train rows and summary (and, for a trial, the
    study, trial number, parameters and state)."""

    path: Path
    name: str
    config: dict
    evals: list
    trains: list
    summary: dict | None
    study: str | None = None
    number: int | None = None
    params: dict = field(default_factory=dict)
    state: str = "complete"
    error: str | None = None
    time_s: float | None = None

    @property
    def model(self) -> str:
        return (self.config.get("model") or {}).get("name") or (self.summary or {}).get(
            "model", "?"
        )

    def best(self, metric: str = "top1") -> dict | None:
        rows = [r for r in self.evals if math.isfinite(score_of(r, metric))]
        if not rows:
            return None
        return (min if metric == "loss" else max)(rows, key=lambda r: score_of(r, metric))

    @property
    def top1(self) -> float | None:
        b = self.best()
        return None if b is None else score_of(b, "top1")

    @property
    def top5(self) -> float | None:
        b = self.best()
        return None if b is None else score_of(b, "top5")

    @property
    def epochs(self) -> float | None:
        return self.evals[-1].get("epoch") if self.evals else None


@dataclass
class StudyRecord:
    """One sweep: its description (sweep.json), the Optuna study (when its storage opens) and the
    runs of its trials."""

    path: Path
    name: str
    sweep: dict
    runs: list
    optuna_study: Any = None

    @property
    def metric(self) -> str:
        return self.sweep.get("metric", "top1")

    def param(self, name: str) -> dict | None:
        for p in self.sweep.get("space", []):
            if p.get("name") == name:
                return p
        return None


def load_run(path: Path, name: str | None = None) -> RunRecord | None:
    rows = read_metrics(path)
    config = _json(path / "config.json") or {}
    if not rows and not config:
        return None
    by_step = {}
    for r in rows:
        if r.get("kind") == "eval":
            by_step[r["step"]] = r
    evals = [by_step[s] for s in sorted(by_step)]
    trains = [r for r in rows if r.get("kind") == "train"]
    summary = _json(path / "summary.json")
    run = RunRecord(
        path=path,
        name=name or path.name,
        config=config,
        evals=evals,
        trains=trains,
        summary=summary,
        time_s=(summary or {}).get("time_s"),
    )
    trial = _json(path / "trial.json")
    if trial:
        run.study, run.number = trial.get("study"), trial.get("number")
        run.params = trial.get("params", {})
        run.state = trial.get("state", "complete")
        run.error = (trial.get("user_attrs") or {}).get("error")
        run.time_s = (trial.get("user_attrs") or {}).get("time_s", run.time_s)
    return run


def _open_optuna(url: str, name: str):
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=name, storage=url)
    except Exception:  # no optuna, storage unreachable, study missing: fall back to trial.json
        return None


def load_study(path: Path, storage: str | None = None) -> StudyRecord:
    sweep = _json(path / "sweep.json") or {}
    name = sweep.get("study_name") or sweep.get("name") or path.name
    url = storage or sweep.get("storage") or f"sqlite:///{(path / 'study.db').absolute()}"
    if not storage and not (path / "study.db").exists() and url.startswith("sqlite"):
        url = f"sqlite:///{(path / 'study.db').absolute()}"
    study = _open_optuna(url, name)
    runs: dict[int, RunRecord] = {}
    trials_dir = path / "trials"
    if study is not None:
        for t in study.get_trials(deepcopy=False):
            if not t.state.is_finished():
                continue
            if t.state.name == "FAIL" and "error" not in t.user_attrs:
                continue  # interrupted / stale; its retry owns the workdir
            wd = Path(t.user_attrs.get("workdir", trials_dir / f"{t.number:04d}"))
            if not wd.exists():  # a moved study: look beside it
                wd = trials_dir / wd.name
            run = load_run(wd, f"{name}#{t.number}") or RunRecord(
                path=wd, name=f"{name}#{t.number}", config={}, evals=[], trains=[], summary=None
            )
            run.study, run.number, run.params = name, t.number, dict(t.params)
            run.state = {"COMPLETE": "complete", "PRUNED": "pruned"}.get(t.state.name, "failed")
            run.error = t.user_attrs.get("error")
            run.time_s = t.user_attrs.get("time_s", run.time_s)
            runs[t.number] = run
    elif trials_dir.is_dir():
        for wd in sorted(p for p in trials_dir.iterdir() if p.is_dir()):
            run = load_run(wd)
            if run is not None and run.number is not None:
                run.name = f"{name}#{run.number}"
                runs[run.number] = run
    return StudyRecord(
        path=path, name=name, sweep=sweep, runs=[runs[k] for k in sorted(runs)], optuna_study=study
    )


def _is_study(p: Path) -> bool:
    return (p / "sweep.json").exists() or (p / "study.db").exists()


def _is_run(p: Path) -> bool:
    return (p / "metrics.jsonl").exists() or (p / "config.json").exists()


def load_dirs(paths, storage: str | None = None) -> tuple[list[RunRecord], list[StudyRecord]]:
    """Runs and studies under ``paths`` (each a run dir, a study dir, or a folder holding them,
    searched two levels deep). Runs of studies are not repeated in the run list."""
    runs, studies = [], []
    seen = set()

    def visit(p: Path, depth: int):
        p = p.absolute()
        if p in seen or not p.is_dir():
            return
        seen.add(p)
        if _is_study(p):
            studies.append(load_study(p, storage))
        elif _is_run(p):
            run = load_run(p)
            if run is not None:
                runs.append(run)
        elif depth > 0:
            for child in sorted(c for c in p.iterdir() if c.is_dir()):
                visit(child, depth - 1)

    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such run or study directory: {path}")
        visit(path, 2)
    return runs, studies


def recipe_of(config: dict) -> str:
    """ "baseline" (crop + flip only), "optimized" (RandAugment + Mixup/CutMix + label smoothing)
    or "other", read from a run's resolved config."""
    a = config.get("augment") or {}
    ra, mix = bool(a.get("rand_augment")), (a.get("mixup_alpha", 0) or a.get("cutmix_alpha", 0))
    ls = a.get("label_smoothing", 0)
    if not (ra or mix or ls or a.get("random_erasing", 0)):
        return "baseline"
    if ra and mix and ls:
        return "optimized"
    return "other"
