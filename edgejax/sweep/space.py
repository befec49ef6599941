"""Search spaces as data: each parameter is a plain dict built by one of the helpers below.

    space = (
        categorical("optimizer.name", ["sgd", "adamw"]),
        loguniform("optimizer.lr", 0.01, 0.2, name="sgd_lr", when={"optimizer.name": "sgd"}),
        loguniform("optimizer.lr", 1e-4, 3e-3, name="adamw_lr", when={"optimizer.name": "adamw"}),
        uniform("optimizer.momentum", 0.8, 0.99, when={"optimizer.name": "sgd"}),
        presets("augment_stack", {"baseline": {}, "+randaugment": {"augment.rand_augment": True}}),
    )

``key`` is a dotted training-config key (``optimizer.lr``); ``name`` is the Optuna parameter name
(the key unless given; give one when two parameters set the same key under different conditions).
``when={"<name>": value-or-list}`` samples the parameter only when an earlier parameter took one of
those values (conditional spaces; parameters are sampled in order). ``presets`` picks one of several
named bundles of overrides (the Optuna value is the label), e.g. the cumulative augmentation stack.
``grid=[...]`` gives the values a grid sampler tries for float / int parameters.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = [
    "loguniform",
    "uniform",
    "integer",
    "categorical",
    "presets",
    "cumulative",
    "check_space",
    "sample",
    "grid_space",
    "SpaceError",
]


class SpaceError(ValueError):
    """A search space that cannot work; the message names the parameter."""


def _param(kind: str, key: str | None, name: str | None, when, grid, **kw) -> dict:
    p = {"type": kind, "key": key, "name": name or key}
    if when:
        p["when"] = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in when.items()}
    if grid is not None:
        p["grid"] = list(grid)
    p.update(kw)
    return p


def loguniform(
    key: str,
    low: float,
    high: float,
    *,
    name: str | None = None,
    when: Mapping | None = None,
    grid: Iterable | None = None,
) -> dict:
    """A float sampled log-uniformly in [low, high] (learning rates, weight decay)."""
    return _param("float", key, name, when, grid, low=float(low), high=float(high), log=True)


def uniform(
    key: str,
    low: float,
    high: float,
    *,
    step: float | None = None,
    name: str | None = None,
    when: Mapping | None = None,
    grid: Iterable | None = None,
) -> dict:
    """A float sampled uniformly in [low, high] (optionally on a ``step`` lattice)."""
    return _param(
        "float", key, name, when, grid, low=float(low), high=float(high), log=False, step=step
    )


def integer(
    key: str,
    low: int,
    high: int,
    *,
    step: int = 1,
    log: bool = False,
    name: str | None = None,
    when: Mapping | None = None,
    grid: Iterable | None = None,
) -> dict:
    """An int in [low, high] (``log=True`` for batch sizes and other scale-like integers)."""
    return _param(
        "int", key, name, when, grid, low=int(low), high=int(high), step=int(step), log=bool(log)
    )


def categorical(
    key: str, choices: Iterable, *, name: str | None = None, when: Mapping | None = None
) -> dict:
    """One of ``choices`` (None, bool, int, float or str values)."""
    return _param("categorical", key, name, when, None, choices=list(choices))


def presets(
    name: str, options: Mapping[str, Mapping[str, Any]], *, when: Mapping | None = None
) -> dict:
    """One of several named bundles of config overrides; the Optuna parameter is the label.
    ``options`` keeps its order (tables list the labels in that order)."""
    return _param(
        "presets",
        None,
        name,
        when,
        None,
        choices=list(options),
        options={k: dict(v) for k, v in options.items()},
    )


def cumulative(steps: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict]:
    """``[(label, overrides), ...]`` -> ``{label: overrides of this step and all before it}``:
    the study's cumulative ablation (baseline -> +A -> +A+B -> ...)."""
    out, acc = {}, {}
    for label, overrides in steps:
        acc = {**acc, **overrides}
        out[label] = dict(acc)
    return out


def check_space(space) -> list[dict]:
    """Validate a space (tuple of parameter dicts); returns it as a list. Raises ``SpaceError``."""
    seen: dict[str, dict] = {}
    out = []
    for p in space:
        p = dict(p)
        name = p.get("name")
        kind = p.get("type")
        if not name:
            raise SpaceError(f"search-space parameter without a name: {p}")
        if name in seen:
            raise SpaceError(f"search-space parameter {name!r} given twice; give one a name=")
        if kind not in ("float", "int", "categorical", "presets"):
            raise SpaceError(f"parameter {name!r}: unknown type {kind!r}")
        if kind in ("float", "int"):
            if not p["low"] < p["high"] and not p["low"] == p["high"]:
                raise SpaceError(f"parameter {name!r}: low {p['low']} > high {p['high']}")
            if p.get("log") and p["low"] <= 0:
                raise SpaceError(f"parameter {name!r}: a log range needs low > 0, got {p['low']}")
            for v in p.get("grid", ()):
                if not p["low"] <= v <= p["high"]:
                    raise SpaceError(
                        f"parameter {name!r}: grid value {v} outside [{p['low']}, {p['high']}]"
                    )
        elif not p.get("choices"):
            raise SpaceError(f"parameter {name!r}: no choices")
        for cond, values in p.get("when", {}).items():
            if cond not in seen:
                raise SpaceError(
                    f"parameter {name!r} depends on {cond!r}, which is not an earlier "
                    f"parameter (known: {', '.join(seen) or 'none'})"
                )
            src = seen[cond]
            if src["type"] in ("categorical", "presets"):
                bad = [v for v in values if v not in src["choices"]]
                if bad:
                    raise SpaceError(
                        f"parameter {name!r}: condition {cond}={bad[0]!r} is not one "
                        f"of {src['choices']}"
                    )
        seen[name] = p
        out.append(p)
    return out


def sample(trial, space: list[dict]) -> tuple[dict, dict]:
    """Ask ``trial`` (an ``optuna.Trial``) for each active parameter in order.

    Returns (params {name: value}, overrides {dotted config key: value}).
    """
    params: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for p in space:
        if any(
            params.get(cond, _MISSING) not in values for cond, values in p.get("when", {}).items()
        ):
            continue
        name, kind = p["name"], p["type"]
        if kind == "float":
            v = trial.suggest_float(name, p["low"], p["high"], log=p["log"], step=p.get("step"))
        elif kind == "int":
            v = trial.suggest_int(name, p["low"], p["high"], step=p["step"], log=p["log"])
        else:
            v = trial.suggest_categorical(name, p["choices"])
        params[name] = v
        if kind == "presets":
            overrides.update(p["options"][v])
        else:
            overrides[p["key"]] = v
    return params, overrides


def grid_space(space: list[dict]) -> dict[str, list]:
    """The ``{name: values}`` a grid sampler enumerates. Conditional parameters are not allowed
    (a grid over a conditional space has holes); float / int parameters need ``grid=[...]``."""
    out = {}
    for p in space:
        if p.get("when"):
            raise SpaceError(
                f"parameter {p['name']!r} is conditional: the grid sampler needs an "
                f"unconditional space (use sampler 'tpe' or 'random')"
            )
        if p["type"] in ("float", "int"):
            if "grid" not in p:
                raise SpaceError(
                    f"parameter {p['name']!r}: the grid sampler needs grid=[...] values"
                )
            out[p["name"]] = list(p["grid"])
        else:
            out[p["name"]] = list(p["choices"])
    return out


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()
