"""Sweep configs: ``configs/sweeps/<name>.py`` with ``get_config(arg)`` returning the ConfigDict
made by :func:`sweep_config` and filled in; loading them and building each trial's training config.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from typing import Any

import ml_collections

from .space import check_space, grid_space

__all__ = [
    "sweep_config",
    "load_sweep",
    "load_train_config",
    "trial_config",
    "parse_overrides",
    "SweepConfigError",
]

SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("none", "median", "hyperband")
METRICS = {"top1": "maximize", "top5": "maximize", "loss": "minimize"}


class SweepConfigError(ValueError):
    """A sweep config that cannot work; the message names the bad field."""


def sweep_config() -> ml_collections.ConfigDict:
    """All fields of a sweep config, with defaults."""
    s = ml_collections.ConfigDict()
    s.name = ""  # study name ("" = the config file's stem and arg)
    s.description = ""  # one line, shown in reports
    s.base = ""  # training config: "configs/<model>.py:<recipe>" (cwd- or repo-relative)
    s.fixed = ()  # ((dotted key, value), ...) applied to every trial before the space
    s.space = ()  # parameter dicts from edgejax.sweep.space
    s.sampler = "tpe"  # tpe | grid | random
    s.tpe_startup_trials = 5  # random trials before TPE models the space
    s.pruner = "median"  # none | median | hyperband
    s.pruner_startup_trials = 2  # median: trials that finish before anything is pruned
    s.pruner_warmup_epochs = 1  # median: epochs a trial runs before it can be pruned
    s.hyperband_min_epochs = 1
    s.hyperband_reduction_factor = 3
    s.metric = "top1"  # top1 | top5 (maximised) | loss (minimised); best of raw and EMA
    s.n_trials = 0  # 0 = the grid size for grid, else 20
    s.seed = 0  # sampler seed
    return s


def _import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"_edgejax_cfg_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise SweepConfigError(f"cannot import config file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise SweepConfigError(f"{path} has no get_config(arg) function")
    return module


def _split_spec(spec: str) -> tuple[str, str | None]:
    path, _, arg = spec.partition(":")
    return path, (arg or None)


def _find(path: str, *roots: Path) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        if not p.exists():
            raise SweepConfigError(f"config file {path} does not exist")
        return p.resolve()
    for root in roots:
        if (root / p).exists():
            return (root / p).resolve()
    raise SweepConfigError(
        f"config file {path!r} not found (looked in the current directory and "
        f"{', '.join(str(r) for r in roots)})"
    )


def load_sweep(spec: str) -> ml_collections.ConfigDict:
    """Load ``path/to/sweep.py[:arg]``; fill ``name`` and the resolved ``base`` path; validate."""
    path, arg = _split_spec(spec)
    file = _find(path)
    module = _import_file(file)
    s = module.get_config(arg) if arg is not None else module.get_config()
    known = sweep_config()
    for key in s.keys():
        if key not in known:
            raise SweepConfigError(
                f"sweep config {file.name}: unknown field {key!r}; known: {', '.join(known.keys())}"
            )
    s.unlock() if hasattr(s, "unlock") else None
    if not s.name:
        s.name = file.stem + (f"_{arg}" if arg else "")
    if not s.base:
        raise SweepConfigError(f"sweep config {file.name}: `base` (the training config) is empty")
    base_path, base_arg = _split_spec(s.base)
    # configs/sweeps/x.py -> the repository root two levels up, and the sweep file's folder
    base_file = _find(base_path, file.parent, file.parent.parent, file.parent.parent.parent)
    s.base = str(base_file) + (f":{base_arg}" if base_arg else "")
    if s.sampler not in SAMPLERS:
        raise SweepConfigError(f"sweep sampler {s.sampler!r}: use one of {', '.join(SAMPLERS)}")
    if s.pruner not in PRUNERS:
        raise SweepConfigError(f"sweep pruner {s.pruner!r}: use one of {', '.join(PRUNERS)}")
    if s.metric not in METRICS:
        raise SweepConfigError(f"sweep metric {s.metric!r}: use one of {', '.join(METRICS)}")
    s.space = tuple(check_space(s.space))
    if not s.space:
        raise SweepConfigError(f"sweep config {file.name}: the search space is empty")
    if s.sampler == "grid":
        grid_space(list(s.space))  # raises for conditional / grid-less parameters
    return s


def load_train_config(spec: str) -> ml_collections.ConfigDict:
    """Load a training config ``path.py[:arg]`` (unlocked)."""
    path, arg = _split_spec(spec)
    module = _import_file(_find(path))
    c = module.get_config(arg) if arg is not None else module.get_config()
    c.unlock()
    return c


def parse_value(text: str) -> Any:
    """``"0.1"`` -> 0.1, ``"True"`` -> True, ``"(1, 2)"`` -> (1, 2), anything else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items) -> list[tuple[str, Any]]:
    """``["num_epochs=5", "data.dataset=/x"]`` -> ``[("num_epochs", 5), ("data.dataset", "/x")]``."""
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SweepConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. num_epochs=5")
        out.append((key.strip(), parse_value(value.strip())))
    return out


def _set(config, key: str, value: Any) -> None:
    from edgejax.train.config import ConfigError

    node = config
    *parents, leaf = key.split(".")
    try:
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(leaf)
    except KeyError:
        import difflib

        from edgejax.train.config import _flat

        known = list(_flat(config.to_dict()))
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown config key {key!r}.{hint}") from None
    old = node[leaf]
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key {key!r}: {e}") from None


def trial_config(base: ml_collections.ConfigDict, *override_lists) -> ml_collections.ConfigDict:
    """A copy of ``base`` with each ``[(key, value), ...]`` (or dict) applied in order, validated
    against the training schema (``edgejax.train.validate``)."""
    from edgejax.train import validate

    c = ml_collections.ConfigDict(base.to_dict())
    for overrides in override_lists:
        items = overrides.items() if isinstance(overrides, dict) else overrides
        for key, value in items:
            _set(c, key, value)
    return validate(c)


def describe(s) -> dict:
    """The sweep as JSON-able data (stored with the study for resuming and for reports)."""
    d = s.to_dict()
    d["space"] = [dict(p) for p in s.space]
    d["fixed"] = [list(kv) for kv in s.fixed]
    return d


def default_n_trials(s) -> int:
    if s.n_trials:
        return int(s.n_trials)
    if s.sampler == "grid":
        n = 1
        for values in grid_space(list(s.space)).values():
            n *= len(values)
        return n
    return 20


def study_dir_storage(study_dir: str) -> str:
    return "sqlite:///" + os.path.join(os.path.abspath(study_dir), "study.db")
