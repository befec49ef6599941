"""Run a sweep: an Optuna study whose trials are training runs, each in its own workdir.

``<study_dir>/study.db`` (SQLite, unless ``storage`` names another SQLAlchemy URL),
``<study_dir>/sweep.json`` (the sweep, resolved) and ``<study_dir>/trials/<NNNN>/`` (one training
run per trial: ``config.json``, ``metrics.jsonl``, ``summary.json``, ``best/``, ``trial.json``).
With a group size K > 1, trials are asked K at a time and trained as one trial group; the
group's checkpoints live in ``<study_dir>/groups/<NNNN-NNNN-...>/`` until it finishes.

Resuming: finished trials are never repeated. A trial that was interrupted (Ctrl-C, SIGTERM) or
whose worker died (its process is gone, or, on another machine, its heartbeat stopped) is marked
failed and re-queued with the same parameters; the re-queued trial reuses the first attempt's
workdir, so training resumes from its last checkpoint and earlier evaluations are re-reported to
the pruner.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import socket
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

from .config import (
    METRICS,
    SweepConfigError,
    default_n_trials,
    describe,
    load_train_config,
    study_dir_storage,
    trial_config,
)
from .space import grid_space, sample

__all__ = [
    "SweepRunner",
    "SweepInterrupted",
    "read_metrics",
    "eval_records",
    "score_of",
    "open_study",
    "trial_workdir",
    "root_number",
]

TrainFn = Callable[..., dict]


class SweepInterrupted(KeyboardInterrupt):
    """The running trial was interrupted (Ctrl-C or SIGTERM); it is re-queued for the next run."""


def read_metrics(workdir) -> list[dict]:
    """The rows of ``<workdir>/metrics.jsonl`` (missing file -> []). A torn last line (a run
    killed mid-write) is skipped; unreadable lines elsewhere are skipped and named in one line
    on the ``edgejax`` logger."""
    path = Path(workdir) / "metrics.jsonl"
    rows, bad = [], []
    if not path.exists():
        return rows
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif i < len(lines):
            bad.append(i)
    if bad:
        import logging

        logging.getLogger("edgejax").warning(
            "%s: skipped %d unreadable line(s): %s",
            path,
            len(bad),
            ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else ""),
        )
    return rows


def eval_records(workdir) -> list[dict]:
    """Evaluation rows of a run, one per step (the last one wins after a resume), by step."""
    by_step = {}
    for row in read_metrics(workdir):
        if row.get("kind") == "eval":
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def score_of(metrics: dict, metric: str = "top1") -> float:
    """The better of the raw and EMA value of ``metric`` in one evaluation."""
    vals = [float(metrics[k]) for k in (metric, f"ema_{metric}") if k in metrics]
    if not vals:
        return math.nan
    return min(vals) if METRICS[metric] == "minimize" else max(vals)


def _best_eval(evals: list[dict], metric: str) -> dict | None:
    if not evals:
        return None
    sign = -1.0 if METRICS[metric] == "minimize" else 1.0
    return max(evals, key=lambda r: sign * score_of(r, metric))


def root_number(trial) -> int:
    """The number of the first attempt of this trial (itself unless it is a retry)."""
    if hasattr(trial, "_trial_id") and hasattr(trial, "study"):  # a live optuna.Trial
        attrs = trial.study._storage.get_trial(trial._trial_id).system_attrs
    else:  # a FrozenTrial
        attrs = trial.system_attrs
    return int(attrs.get("failed_trial", trial.number))


def trial_workdir(study_dir, number: int) -> Path:
    return Path(study_dir).absolute() / "trials" / f"{number:04d}"


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _driver_url(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 takes
    psycopg (3) for a bare ``postgresql://``, 2.0 takes psycopg2; either works."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    for module, dialect in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{dialect}://" + url[len("postgresql://") :]
    raise SweepConfigError(
        f"--storage {_masked(url)}: no PostgreSQL driver is installed "
        f"(pip install 'edgejax[postgres]')"
    )


def _masked(url: str) -> str:
    """The URL with its password replaced by ***."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        tail = f"{user}:***@{tail.split('@', 1)[1]}"
    return head + sep + tail


_SCHEMA_RACE_TRIES = 5


def _schema_race(e: Exception) -> bool:
    """Whether ``e`` is another worker creating the same tables at the same moment."""
    if type(e).__module__.split(".")[0] != "sqlalchemy":
        return False
    msg = str(getattr(e, "orig", None) or e).lower()
    return "duplicate key" in msg or "already exists" in msg or "unique constraint" in msg


def make_storage(url: str, heartbeat_s: int = 60):
    """An RDB storage with heartbeats (a worker that dies is detected and its trial retried)."""
    optuna = _optuna()
    kw = {}
    if url.startswith("sqlite"):
        kw["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    else:
        kw["engine_kwargs"] = {"pool_pre_ping": True}
    import inspect

    retry = _retry_callback(optuna)(max_retry=3)
    params = inspect.signature(optuna.storages.RDBStorage).parameters
    key = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in params
        else "failed_trial_callback"
    )
    try:
        # Workers started together on a new database race to create Optuna's tables: the losers
        # see a unique-constraint violation from the server's catalog (PostgreSQL) or "already
        # exists". The tables are there by then, so opening it again succeeds.
        for attempt in range(_SCHEMA_RACE_TRIES):
            try:
                return optuna.storages.RDBStorage(
                    _driver_url(url),
                    heartbeat_interval=heartbeat_s,
                    grace_period=3 * heartbeat_s,
                    **{key: retry},
                    **kw,
                )
            except Exception as e:
                if attempt + 1 == _SCHEMA_RACE_TRIES or not _schema_race(e):
                    raise
                time.sleep(0.2 + random.random())
    except ModuleNotFoundError as e:
        raise SweepConfigError(
            f"--storage {_masked(url)}: its database driver is not installed ({e})"
        ) from None
    except Exception as e:  # sqlalchemy's OperationalError / ArgumentError: a long message
        if type(e).__module__.split(".")[0] != "sqlalchemy":
            raise
        first = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise SweepConfigError(
            f"cannot open the study storage {_masked(url)}: "
            f"{first[0] if first else type(e).__name__}"
        ) from None


def make_sampler(s):
    optuna = _optuna()
    if s.sampler == "grid":
        sampler = optuna.samplers.GridSampler(grid_space(list(s.space)), seed=s.seed)
    elif s.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=s.seed)
    else:
        conditional = any(p.get("when") for p in s.space)
        sampler = optuna.samplers.TPESampler(
            seed=s.seed,
            n_startup_trials=s.tpe_startup_trials,
            multivariate=True,
            group=conditional,
            constant_liar=True,
        )
    return _seeded_per_trial(sampler, s.seed)


def _seeded_per_trial(sampler, seed: int):
    """Workers that share a study each build the sampler with the sweep's seed, so each would
    draw the same values in the same order: two workers would train the same configurations.
    Reseeding the sampler's generators from (seed, trial number) before each trial keeps a
    study reproducible and gives every trial its own draws, whatever worker runs it."""
    rngs = [
        r
        for r in (
            getattr(sampler, "_rng", None),
            getattr(getattr(sampler, "_random_sampler", None), "_rng", None),
        )
        if r is not None and hasattr(r, "rng")
    ]
    if not rngs:  # another Optuna's internals: keep its own seeding
        return sampler
    inner = sampler.before_trial

    def before_trial(study, trial):
        for r in rngs:
            r.rng.seed((int(seed) * 1_000_003 + trial.number) % 2**32)
        inner(study, trial)

    sampler.before_trial = before_trial
    return sampler


def make_pruner(s, max_epochs: int):
    optuna = _optuna()
    if s.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=s.pruner_startup_trials, n_warmup_steps=s.pruner_warmup_epochs
        )
    if s.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=s.hyperband_min_epochs,
            max_resource=max(max_epochs, 1),
            reduction_factor=s.hyperband_reduction_factor,
        )
    return optuna.pruners.NopPruner()


def open_study(storage, name: str, s=None, max_epochs: int = 1):
    """Create or load the study ``name`` (sampler and pruner from the sweep ``s`` when given)."""
    optuna = _optuna()
    if s is None:
        return optuna.load_study(study_name=name, storage=storage)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction=METRICS[s.metric],
        sampler=make_sampler(s),
        pruner=make_pruner(s, max_epochs),
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _jsonable(v):
    try:
        json.dumps(v)
        return v
    except TypeError:
        return repr(v)


class SweepRunner:
    """One worker of a sweep. ``run(n_trials)`` runs trials until the study holds ``n_trials``
    finished ones (complete, pruned or failed with an error), then returns a summary dict.

    ``train_fn(config, workdir, *, report_fn) -> summary`` defaults to ``edgejax.train.run``;
    tests pass a small stand-in. ``overrides``: ``[(key, value), ...]`` applied to every trial
    (after the sweep's ``fixed``, before the sampled values).
    ``group_size`` K > 1: ask Optuna for up to K trials at once (batch ask / tell) and train them
    as one trial group (``group_train_fn``, default ``edgejax.train.run_group``; ``group_mode``
    as its ``mode``), each trial reporting its own evaluations to the pruner.
    """

    def __init__(
        self,
        sweep,
        study_dir,
        *,
        storage: str | None = None,
        overrides=(),
        train_fn: TrainFn | None = None,
        keep_checkpoints: str = "best",
        heartbeat_s: int = 60,
        log: Callable[[str], None] | None = None,
        group_size: int = 1,
        group_mode: str = "auto",
        group_train_fn: Callable[..., list] | None = None,
    ):
        if keep_checkpoints not in ("best", "all", "none"):
            raise ValueError(f"keep_checkpoints {keep_checkpoints!r}: use best, all or none")
        self.sweep = sweep
        self.study_dir = Path(study_dir).absolute()
        self.study_dir.mkdir(parents=True, exist_ok=True)
        self.storage_url = storage or study_dir_storage(str(self.study_dir))
        self.overrides = list(overrides)
        self.train_fn = train_fn
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size, self.group_mode = int(group_size), group_mode
        self.group_train_fn = group_train_fn
        self.heartbeat_s = heartbeat_s
        self._group_trial_ids: list[int] = []
        self.keep_checkpoints = keep_checkpoints
        self.log = log or (lambda msg: print(msg, flush=True))
        self.base = load_train_config(sweep.base)
        # Fail on a bad fixed override / base now, not inside every trial.
        probe = trial_config(self.base, list(sweep.fixed), self.overrides)
        self.max_epochs = int(math.ceil(probe.num_epochs))
        if train_fn is None:  # real training: a missing dataset fails here, not in every trial
            from edgejax.train.config import resolve_dataset

            resolve_dataset(probe.data.dataset)
        self.storage = make_storage(self.storage_url, heartbeat_s)
        self.study = open_study(self.storage, sweep.name, sweep, self.max_epochs)
        self._record_sweep()
        self._current_trial_id: int | None = None

    # -- bookkeeping -------------------------------------------------------------------------
    def _record_sweep(self):
        info = describe(self.sweep)
        info["overrides"] = [[k, _jsonable(v)] for k, v in self.overrides]
        info["storage"] = _masked(self.storage_url)
        info["study_dir"] = str(self.study_dir)
        info = json.loads(json.dumps(info))  # as stored: tuples come back as lists
        old = self.study.user_attrs.get("sweep")
        if old is None:
            self.study.set_user_attr("sweep", info)
        elif any(old.get(k) != info[k] for k in ("space", "base", "fixed", "overrides")):
            self.log(
                f"[sweep {self.sweep.name}] warning: the stored study was made with a "
                f"different base, search space or overrides; its finished trials are not "
                f"comparable with new ones (use a new --study-dir); continuing"
            )
            self.study.set_user_attr("sweep", info)
        path = self.study_dir / "sweep.json"
        with open(path, "w") as f:
            json.dump({**info, "study_name": self.sweep.name}, f, indent=2)

    def _counts(self) -> dict:
        optuna = _optuna()
        S = optuna.trial.TrialState
        c = {"finished": 0, "running": 0, "waiting": 0, "complete": 0, "pruned": 0, "failed": 0}
        for t in self.study.get_trials(deepcopy=False):
            if t.state == S.COMPLETE:
                c["complete"] += 1
            elif t.state == S.PRUNED:
                c["pruned"] += 1
            elif t.state == S.FAIL and "error" in t.user_attrs:
                c["failed"] += 1
            elif t.state == S.RUNNING:
                c["running"] += 1
            elif t.state == S.WAITING:
                c["waiting"] += 1
        c["finished"] = c["complete"] + c["pruned"] + c["failed"]
        return c

    def recover(self) -> int:
        """Fail and re-queue trials left RUNNING by a dead worker process on this host (other
        hosts' dead workers are caught by the heartbeat). Returns how many were re-queued."""
        optuna = _optuna()
        S = optuna.trial.TrialState
        host = socket.gethostname()
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(S.RUNNING,)):
            pid = t.user_attrs.get("pid")
            if t.user_attrs.get("host") != host or pid is None or pid == os.getpid():
                continue
            # a re-queued trial carries its first attempt's user attributes (Optuna's retry
            # callback copies them): until the worker that took it records itself, its pid is
            # the dead worker's, and failing it would take the trial from under that worker
            if t.user_attrs.get("pid_trial") != t.number:
                continue
            if _pid_alive(int(pid)):
                continue
            if self.storage.set_trial_state_values(t._trial_id, S.FAIL):
                self._requeue(t.number, "its worker process is gone")
                n += 1
        optuna.storages.fail_stale_trials(self.study)
        return n

    def _requeue(self, number: int, why: str):
        optuna = _optuna()
        frozen = self.study.get_trials(deepcopy=False)[number]
        _retry_callback(optuna)()(self.study, frozen)
        self.log(
            f"[sweep {self.sweep.name}] trial {number} re-queued ({why}); its workdir "
            f"{trial_workdir(self.study_dir, root_number(frozen)).name} resumes"
        )

    # -- one trial ---------------------------------------------------------------------------
    def _prepare(self, trial):
        """Sample ``trial`` -> (params, config, workdir, report_fn); earlier evaluations of a
        resumed trial are re-reported to the pruner first."""
        s = self.sweep
        root = root_number(trial)
        workdir = trial_workdir(self.study_dir, root)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("pid_trial", trial.number)  # which attempt the pid belongs to
        trial.set_user_attr("workdir", str(workdir))
        params, sampled = sample(trial, list(s.space))
        trial.set_user_attr("overrides", {k: _jsonable(v) for k, v in sampled.items()})
        config = trial_config(self.base, list(s.fixed), self.overrides, sampled)
        reported: set[int] = set()
        for row in eval_records(workdir):  # a resumed trial: tell the pruner what was seen
            epoch = int(round(row.get("epoch", 0)))
            if epoch not in reported:
                trial.report(score_of(row, s.metric), epoch)
                reported.add(epoch)

        def report_fn(epoch, metrics):
            epoch = int(epoch)
            if epoch in reported:
                return False
            value = score_of(metrics, s.metric)
            if not math.isfinite(value):
                return False
            trial.report(value, epoch)
            reported.add(epoch)
            trial.set_user_attr("epochs_done", epoch)
            prune = trial.should_prune()
            if prune:
                self.log(
                    f"[sweep {s.name}] trial {trial.number} pruned at epoch {epoch} "
                    f"({s.metric} {value:.2f})"
                )
            return prune

        return params, config, workdir, report_fn

    def _failed(self, trial, workdir, params, t0, e: BaseException):
        trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        trial.set_user_attr("time_s", round(time.time() - t0, 2))
        self._write_trial_json(trial, workdir, params, "failed", None)
        self.log(
            f"[sweep {self.sweep.name}] trial {trial.number} FAILED after "
            f"{time.time() - t0:.0f}s: {type(e).__name__}: {e}"
        )

    def _finish(self, trial, workdir, params, t0, summary) -> float:
        """Record a finished run; -> the value, or raise ``TrialPruned`` / ``RuntimeError``."""
        s = self.sweep
        status = summary.get("status", "completed")
        if status == "preempted":
            trial.set_user_attr("interrupted", True)
            raise SweepInterrupted(f"trial {trial.number} preempted (SIGTERM)")
        if status == "failed":
            raise FloatingPointError(f"non-finite loss at step {summary.get('failed_step')}")
        best = _best_eval(eval_records(workdir), s.metric)
        value = score_of(best, s.metric) if best else summary.get("best_top1")
        attrs = {
            "status": status,
            "time_s": round(time.time() - t0, 2),
            "num_params": summary.get("num_params"),
            "model": summary.get("model"),
            "epochs_done": summary.get("epoch"),
            "group_size": summary.get("group_size"),
            "group_dir": summary.get("group_dir"),
        }
        if best:
            attrs.update(
                best_epoch=best.get("epoch"),
                best_step=best.get("step"),
                top1=score_of(best, "top1"),
                top5=score_of(best, "top5"),
                loss=score_of(best, "loss"),
            )
        for k, v in attrs.items():
            if v is not None:
                trial.set_user_attr(k, _jsonable(v))
        self._cleanup(workdir)
        if value is None or not math.isfinite(float(value)):
            trial.set_user_attr("error", "the run produced no evaluation")
            self._write_trial_json(trial, workdir, params, "failed", None)
            raise RuntimeError(f"trial {trial.number}: the run produced no evaluation")
        state = "pruned" if status == "pruned" else "complete"
        self._write_trial_json(trial, workdir, params, state, value)
        tail = f"pruned at epoch {attrs['epochs_done']:.0f}" if state == "pruned" else "complete"
        self.log(
            f"[sweep {s.name}] trial {trial.number} {tail}: {s.metric} {float(value):.2f} "
            f"(best epoch {attrs.get('best_epoch')}) in {attrs['time_s']:.0f}s"
        )
        if state == "pruned":
            optuna = _optuna()
            raise optuna.TrialPruned(f"{s.metric} {float(value):.2f}")
        return float(value)

    def _start_log(self, trial, params, workdir, extra=""):
        c = self._counts()
        self.log(
            f"[sweep {self.sweep.name}] trial {trial.number} start "
            f"({c['finished']}/{self.n_trials} finished){extra}: {_fmt(params)} -> {workdir}"
        )

    # -- one trial ---------------------------------------------------------------------------
    def objective(self, trial) -> float:
        self._current_trial_id = trial._trial_id
        t0 = time.time()
        params: dict[str, Any] = {}
        workdir = trial_workdir(self.study_dir, root_number(trial))
        try:
            params, config, workdir, report_fn = self._prepare(trial)
            self._start_log(trial, params, workdir)
            train_fn = self.train_fn
            if train_fn is None:
                from edgejax.train import run as train_fn
            summary = train_fn(config, str(workdir), report_fn=report_fn)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as e:  # recorded as a failed trial; the study goes on
            self._failed(trial, workdir, params, t0, e)
            raise
        return self._finish(trial, workdir, params, t0, summary)

    # -- a group of trials -------------------------------------------------------------------
    def _run_group(self, n: int) -> int:
        """Ask Optuna for ``n`` trials at once (batch ask / tell), train those that share group
        keys as one trial group, tell each its result. Returns how many were asked."""
        from edgejax.train.hparams import group_key

        optuna = _optuna()
        S = optuna.trial.TrialState
        with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize":
            warnings.simplefilter("ignore")  # _Heartbeat below keeps these trials' heartbeats
            trials = [self.study.ask() for _ in range(n)]
        self._group_trial_ids = [t._trial_id for t in trials]
        t0 = time.time()
        prepared = []
        for trial in trials:
            workdir = trial_workdir(self.study_dir, root_number(trial))
            try:
                prepared.append((trial, *self._prepare(trial)))
            except Exception as e:
                self._failed(trial, workdir, {}, t0, e)
                self._tell(trial, state=S.FAIL)
        # Trials that differ in a group key (model, batch size, optimizer kind, ...) train in
        # separate groups, one after another.
        parts: dict[str, list] = {}
        for p in prepared:
            parts.setdefault(json.dumps(group_key(p[2]), sort_keys=True, default=str), []).append(p)
        beat = _Heartbeat(self.storage, [t._trial_id for t in trials], self.heartbeat_s)
        try:
            for part in parts.values():
                self._train_part(part, t0)
        finally:
            beat.stop()
        self._group_trial_ids = []  # (kept on an interrupt: run() re-queues them)
        return n

    def _tell(self, trial, value=None, state=None):
        try:
            self.study.tell(trial, value, state=state)
        except RuntimeError as e:
            # The grid sampler stops the study when its last point is told, by calling
            # Study.stop, which only works inside optimize(); the trial is recorded either way.
            if "Study.stop" not in str(e):
                raise

    def _train_part(self, part, t0):
        optuna = _optuna()
        S = optuna.trial.TrialState
        roots = [root_number(p[0]) for p in part]
        group_dir = self.study_dir / "groups" / "-".join(f"{r:04d}" for r in roots)
        for trial, params, _, workdir, _ in part:
            self._start_log(trial, params, workdir, f", group {group_dir.name}")
        train_fn = self.group_train_fn
        if train_fn is None:
            from edgejax.train import run_group as train_fn
        fns = [p[4] for p in part]
        try:
            summaries = train_fn(
                [p[2] for p in part],
                [str(p[3]) for p in part],
                report_fn=lambda k, epoch, m: fns[k](epoch, m),
                group_dir=str(group_dir),
                mode=self.group_mode,
            )
        except KeyboardInterrupt:
            for trial, *_ in part:
                trial.set_user_attr("interrupted", True)
            raise
        except Exception as e:  # the whole group failed: each trial records it
            for trial, params, _, workdir, _ in part:
                self._failed(trial, workdir, params, t0, e)
                self._tell(trial, state=S.FAIL)
            return
        interrupted = None
        for (trial, params, _, workdir, _), summary in zip(part, summaries):
            try:
                value = self._finish(trial, workdir, params, t0, summary)
                self._tell(trial, value)
            except optuna.TrialPruned:
                self._tell(trial, state=S.PRUNED)
            except SweepInterrupted as e:
                interrupted = e
            except Exception as e:
                self._failed(trial, workdir, params, t0, e)
                self._tell(trial, state=S.FAIL)
        if self.keep_checkpoints != "all" and interrupted is None:
            shutil.rmtree(group_dir, ignore_errors=True)
        if interrupted is not None:
            raise interrupted

    def _write_trial_json(self, trial, workdir: Path, params, state, value):
        workdir.mkdir(parents=True, exist_ok=True)
        frozen = self.study._storage.get_trial(trial._trial_id)
        data = {
            "study": self.sweep.name,
            "number": trial.number,
            "state": state,
            "value": value,
            "metric": self.sweep.metric,
            "params": {k: _jsonable(v) for k, v in params.items()},
            "user_attrs": frozen.user_attrs,
        }
        with open(workdir / "trial.json", "w") as f:
            json.dump(data, f, indent=2)

    def _cleanup(self, workdir: Path):
        if self.keep_checkpoints == "all":
            return
        shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
        if self.keep_checkpoints == "none":
            shutil.rmtree(workdir / "best", ignore_errors=True)

    # -- the worker loop ---------------------------------------------------------------------
    def run(self, n_trials: int | None = None) -> dict:
        """Run trials until the study holds ``n_trials`` finished ones (default: the sweep's
        ``n_trials``, or the grid size). Returns counts and the best trial; ``interrupted`` True
        when a trial was interrupted (it is re-queued: run again to resume)."""
        optuna = _optuna()
        self.n_trials = int(n_trials or default_n_trials(self.sweep))
        s = self.sweep
        self.recover()
        t0 = time.time()
        interrupted = False
        ran = 0
        while True:
            if ran:  # a worker that died meanwhile: its trial is taken up here, not left running
                self.recover()
            c = self._counts()
            remaining = self.n_trials - c["finished"] - c["running"] - c["waiting"]
            if remaining <= 0 and c["waiting"] == 0:
                if c["running"]:
                    self.log(
                        f"[sweep {s.name}] {c['running']} trial(s) still running in other "
                        f"workers; this worker is done"
                    )
                break
            if s.sampler == "grid" and c["waiting"] == 0 and self._grid_exhausted():
                break
            self._current_trial_id = None
            try:
                if self.group_size > 1:
                    ran += self._run_group(max(1, min(self.group_size, remaining + c["waiting"])))
                else:
                    self.study.optimize(
                        self.objective, n_trials=1, catch=(Exception,), gc_after_trial=True
                    )
                    ran += 1
            except KeyboardInterrupt:
                interrupted = True
                S = optuna.trial.TrialState
                ids = list(self._group_trial_ids) or (
                    [self._current_trial_id] if self._current_trial_id is not None else []
                )
                for tid in ids:
                    frozen = self.study._storage.get_trial(tid)
                    if frozen.state == S.RUNNING:  # a group's trials: ask/tell, not optimize
                        self.study._storage.set_trial_state_values(tid, S.FAIL)
                        frozen = self.study._storage.get_trial(tid)
                    if frozen.state == S.FAIL:
                        self._requeue(frozen.number, "interrupted")
                self._group_trial_ids = []
                self.log(f"[sweep {s.name}] interrupted; run the same command again to resume")
                break
        c = self._counts()
        best = None
        try:
            b = self.study.best_trial
            best = {
                "number": b.number,
                "value": b.value,
                "params": b.params,
                "workdir": b.user_attrs.get("workdir"),
            }
        except ValueError:
            pass
        summary = {
            "study": s.name,
            "study_dir": str(self.study_dir),
            "storage": self.storage_url,
            "ran": ran,
            "interrupted": interrupted,
            "time_s": round(time.time() - t0, 1),
            **c,
            "best": best,
        }
        if best:
            self.log(
                f"[sweep {s.name}] {c['complete']} complete, {c['pruned']} pruned, "
                f"{c['failed']} failed; best trial {best['number']}: {s.metric} "
                f"{best['value']:.2f} {_fmt(best['params'])}"
            )
        return summary

    def _grid_exhausted(self) -> bool:
        """All grid points evaluated (a finished trial carries each grid id)."""
        optuna = _optuna()
        sampler = self.study.sampler
        if not isinstance(sampler, optuna.samplers.GridSampler):
            return False
        done = set()
        for t in self.study.get_trials(deepcopy=False):
            if (
                t.state.is_finished()
                and "grid_id" in t.system_attrs
                and not (t.state == optuna.trial.TrialState.FAIL and "error" not in t.user_attrs)
            ):
                done.add(t.system_attrs["grid_id"])
        return len(done) >= len(sampler._all_grids)


class _Heartbeat:
    """Record heartbeats for trials run by ask / tell (``study.optimize`` does it for its own),
    so that workers on other machines can tell a dead group from a slow one."""

    def __init__(self, storage, trial_ids, interval_s: int):
        import threading

        self._stop = threading.Event()
        self._thread = None
        if not hasattr(storage, "record_heartbeat") or not storage.get_heartbeat_interval():
            return

        def beat():
            while True:
                for tid in trial_ids:
                    try:
                        storage.record_heartbeat(tid)
                    except Exception:  # a finished trial or a passing database hiccup
                        pass
                if self._stop.wait(interval_s):
                    return

        self._thread = threading.Thread(target=beat, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _fmt(params: dict) -> str:
    def one(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={one(v)}" for k, v in params.items()) or "(no parameters)"


def _retry_callback(optuna):
    """Optuna >= 4.9 names it RetryHeartbeatStaleTrialCallback; before, RetryFailedTrialCallback."""
    return (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        or optuna.storages.RetryFailedTrialCallback
    )
