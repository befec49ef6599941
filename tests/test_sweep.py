"""edgejax.sweep: search spaces, trials, pruning, resume, failures (with a stand-in for
``edgejax.train.run`` so that they take seconds), and one real sweep through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from edgejax.sweep import (
    SpaceError,
    SweepConfigError,
    SweepRunner,
    categorical,
    cumulative,
    eval_records,
    load_sweep,
    loguniform,
    parse_overrides,
    presets,
    trial_config,
    uniform,
)
from edgejax.sweep.space import check_space, grid_space, sample

ROOT = Path(__file__).resolve().parents[1]

TRAIN_CONFIG = """
from edgejax.train import base_config

def get_config(arg=None):
    c = base_config()
    c.data.image_size = 16
    c.num_epochs = 4.0
    c.log.progress = False
    c.log.tensorboard = False
    return c
"""


def write_sweep(tmp_path: Path, body: str, name: str = "sweep.py") -> Path:
    (tmp_path / "train_cfg.py").write_text(TRAIN_CONFIG)
    path = tmp_path / name
    path.write_text("from edgejax.sweep import *\n" + textwrap.dedent(body))
    return path


class FakeTrain:
    """Stands in for ``edgejax.train.run``: one eval per epoch with a top-1 that depends on the
    config, resuming from the rows already in ``metrics.jsonl`` (as the real loop resumes from its
    checkpoint). ``interrupt_at``: (lr, epoch) at which to raise KeyboardInterrupt once."""

    def __init__(self, interrupt_at=None, fail_lr=None):
        self.calls = []
        self.interrupt_at = interrupt_at
        self.fail_lr = fail_lr

    @staticmethod
    def quality(config) -> float:
        """The final top-1 of a config: best at lr 0.05, lowered by label smoothing."""
        lr = float(config.optimizer.lr)
        return 100.0 - 200.0 * abs(lr - 0.05) - 10.0 * config.augment.label_smoothing

    def __call__(self, config, workdir, *, report_fn=None):
        lr = float(config.optimizer.lr)
        self.calls.append((lr, workdir))
        if self.fail_lr is not None and abs(lr - self.fail_lr) < 1e-12:
            raise RuntimeError(f"boom at lr {lr}")
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config.to_dict(), f)
        done = len(eval_records(workdir))
        quality = self.quality(config)
        status = "completed"
        epochs = int(config.num_epochs)
        for epoch in range(done + 1, epochs + 1):
            if (
                self.interrupt_at
                and abs(lr - self.interrupt_at[0]) < 1e-12
                and epoch == self.interrupt_at[1]
            ):
                self.interrupt_at = None
                raise KeyboardInterrupt
            top1 = quality * epoch / epochs
            row = {
                "kind": "eval",
                "step": epoch * 10,
                "epoch": float(epoch),
                "top1": top1,
                "top5": min(100.0, top1 + 10),
                "loss": 3.0 - top1 / 50,
            }
            with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
                f.write(
                    json.dumps(
                        {"kind": "train", "step": epoch * 10 - 5, "loss": 3.0, "epoch": epoch - 0.5}
                    )
                    + "\n"
                )
                f.write(json.dumps(row) + "\n")
            if report_fn is not None and report_fn(epoch, dict(row)):
                status = "pruned"
                break
        return {
            "status": status,
            "epoch": float(epoch),
            "best_top1": top1,
            "num_params": 1,
            "model": config.model.name,
        }


# -- spaces ------------------------------------------------------------------------------------


def test_space_conditional_sampling_and_presets():
    space = check_space(
        (
            categorical("optimizer.name", ["sgd", "adamw"]),
            loguniform("optimizer.lr", 0.01, 0.2, name="sgd_lr", when={"optimizer.name": "sgd"}),
            uniform("optimizer.momentum", 0.8, 0.99, when={"optimizer.name": "sgd"}),
            loguniform(
                "optimizer.lr", 1e-4, 3e-3, name="adamw_lr", when={"optimizer.name": "adamw"}
            ),
            presets("stack", cumulative([("base", {}), ("+ls", {"augment.label_smoothing": 0.1})])),
        )
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params, overrides = sample(trial, space)
        name = params["optimizer.name"]
        seen.add(name)
        if name == "sgd":
            assert set(params) == {"optimizer.name", "sgd_lr", "optimizer.momentum", "stack"}
            assert 0.01 <= overrides["optimizer.lr"] <= 0.2
        else:
            assert set(params) == {"optimizer.name", "adamw_lr", "stack"}
            assert "optimizer.momentum" not in overrides
            assert 1e-4 <= overrides["optimizer.lr"] <= 3e-3
        assert ("augment.label_smoothing" in overrides) == (params["stack"] == "+ls")
        study.tell(trial, 1.0)
    assert seen == {"sgd", "adamw"}


def test_space_errors():
    with pytest.raises(SpaceError, match="depends on 'optimizer.name'"):
        check_space((uniform("optimizer.momentum", 0.8, 0.99, when={"optimizer.name": "sgd"}),))
    with pytest.raises(SpaceError, match="low > 0"):
        check_space((loguniform("optimizer.lr", 0.0, 0.1),))
    with pytest.raises(SpaceError, match="grid"):
        grid_space(check_space((loguniform("optimizer.lr", 0.01, 0.1),)))
    with pytest.raises(SpaceError, match="conditional"):
        grid_space(
            check_space(
                (
                    categorical("optimizer.name", ["sgd"]),
                    uniform(
                        "optimizer.momentum", 0.8, 0.9, grid=[0.8], when={"optimizer.name": "sgd"}
                    ),
                )
            )
        )


def test_trial_config_and_overrides():
    from edgejax.train import ConfigError, base_config

    assert parse_overrides(["num_epochs=5", "data.dataset=/x/y", "augment.rand_augment=True"]) == [
        ("num_epochs", 5),
        ("data.dataset", "/x/y"),
        ("augment.rand_augment", True),
    ]
    c = trial_config(base_config(), [("num_epochs", 5)], {"optimizer.lr": 0.02})
    assert c.num_epochs == 5.0 and c.optimizer.lr == 0.02
    with pytest.raises(ConfigError, match="optimizer.lr"):
        trial_config(base_config(), {"optimizer.lrr": 0.1})
    with pytest.raises(SweepConfigError):
        parse_overrides(["num_epochs"])


def test_paper_sweep_configs_load():
    from edgejax.sweep.config import default_n_trials
    from edgejax.train.recipes import MODEL_TRAITS

    expected = {
        "augment_stack": 5,
        "lr": 5,
        "batch_size": 4,
        "optimizer": 2,
        "warmup": 2,
        "tune": 40,
        "distill": 6,
        "progressive": 12,
    }
    for kind, n in expected.items():
        for model in MODEL_TRAITS:
            s = load_sweep(str(ROOT / f"configs/sweeps/{kind}.py:{model}"))
            assert s.name == f"{kind}_{model}" and default_n_trials(s) == n
    # the recipes' sweeps give valid trials: a distilled one, a progressive one at the extremes
    from edgejax.sweep.config import trial_config
    from edgejax.train.recipes import paper_config

    s = load_sweep(str(ROOT / "configs/sweeps/distill.py:mobilenetv3_large_100"))
    c = trial_config(paper_config("mobilenetv3_large_100", "optimized"), s.fixed)
    assert c.distill.teacher == "convnext_tiny" and c.distill.pretrained == "hub"
    s = load_sweep(str(ROOT / "configs/sweeps/progressive.py:efficientnetv2_s"))
    c = trial_config(
        paper_config("efficientnetv2_s", "optimized"),
        {"progressive.stages": 4, "progressive.start_size": 128},
    )
    assert c.progressive.stages == 4
    s = load_sweep(str(ROOT / "configs/sweeps/augment_stack.py:repvgg_a2"))
    stack = s.space[0]["options"]
    assert list(stack) == ["baseline", "+randaugment", "+mixup", "+cutmix", "+label_smoothing"]
    assert stack["+label_smoothing"]["augment.mixup_alpha"] == 0.8  # cumulative
    with pytest.raises(ValueError, match="needs a model"):
        load_sweep(str(ROOT / "configs/sweeps/lr.py"))
    # the CIFAR-10 study: 13 ablation recipes (the stack cumulative), 24 TPE trials
    abl = load_sweep(str(ROOT / "configs/sweeps/cifar10_study.py:ablations"))
    recipes = abl.space[0]["options"]
    assert default_n_trials(abl) == 13 and recipes["baseline"] == {}
    assert recipes["+random_erasing"]["data.scale"] == (0.35, 1.0)
    assert recipes["+random_erasing"]["augment.label_smoothing"] == 0.1
    assert default_n_trials(load_sweep(str(ROOT / "configs/sweeps/cifar10_study.py:tpe"))) == 24
    with pytest.raises(ValueError, match="needs a part"):
        load_sweep(str(ROOT / "configs/sweeps/cifar10_study.py"))


# -- studies -----------------------------------------------------------------------------------

LR_GRID = """
def get_config(arg=None):
    s = sweep_config()
    s.base = "train_cfg.py"
    s.space = (loguniform("optimizer.lr", 0.01, 0.2, grid=[0.01, 0.05, 0.1, 0.2]),)
    s.sampler = "grid"
    s.pruner = "median"
    s.pruner_startup_trials = 1
    s.pruner_warmup_epochs = 1
    return s
"""


def test_grid_sweep_prunes_completes_and_resumes(tmp_path):
    cfg = write_sweep(tmp_path, LR_GRID)
    study_dir = tmp_path / "study"
    fake = FakeTrain(interrupt_at=(0.1, 3))
    runner = SweepRunner(
        load_sweep(str(cfg)),
        study_dir,
        train_fn=fake,
        log=lambda m: None,
        overrides=[("data.scale", (0.5, 1.0))],
    )
    first = runner.run()
    assert first["interrupted"]
    done_lrs = [lr for lr, _ in fake.calls[:-1]]
    # resume: the interrupted trial is re-run in its own workdir; finished ones are not repeated
    fake2 = FakeTrain()
    logs = []
    runner = SweepRunner(
        load_sweep(str(cfg)),
        study_dir,
        train_fn=fake2,
        log=logs.append,
        overrides=[("data.scale", (0.5, 1.0))],
    )
    second = runner.run()
    assert not [m for m in logs if "warning" in m], logs  # same sweep: resumes without a warning
    assert not second["interrupted"]
    assert second["complete"] + second["pruned"] == 4 and second["failed"] == 0
    assert second["pruned"] >= 1 and second["complete"] >= 1
    rerun = [lr for lr, _ in fake2.calls]
    assert 0.1 in rerun and not set(done_lrs) & set(rerun)
    interrupted_dir = [w for lr, w in fake.calls if lr == 0.1][0]
    assert [w for lr, w in fake2.calls if lr == 0.1][0] == interrupted_dir
    epochs = [r["epoch"] for r in eval_records(interrupted_dir)]
    assert epochs == sorted(set(epochs))  # the resumed run continued, it did not restart
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{study_dir}/study.db")
    finished = [
        t
        for t in study.trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert sorted(t.params["optimizer.lr"] for t in finished) == [0.01, 0.05, 0.1, 0.2]
    assert study.best_trial.params["optimizer.lr"] == 0.05
    for t in finished:
        tj = json.loads((Path(t.user_attrs["workdir"]) / "trial.json").read_text())
        assert tj["state"] in ("complete", "pruned") and tj["params"] == t.params
    # a third run has nothing left to do
    fake3 = FakeTrain()
    SweepRunner(load_sweep(str(cfg)), study_dir, train_fn=fake3, log=lambda m: None).run()
    assert fake3.calls == []


TPE_COND = """
def get_config(arg=None):
    s = sweep_config()
    s.name = "tpe_cond"
    s.base = "train_cfg.py"
    s.fixed = (("num_epochs", 3.0),)
    s.space = (
        categorical("optimizer.name", ["sgd", "adamw"]),
        loguniform("optimizer.lr", 0.01, 0.2, name="sgd_lr", when={"optimizer.name": "sgd"}),
        uniform("optimizer.momentum", 0.8, 0.99, when={"optimizer.name": "sgd"}),
        loguniform("optimizer.lr", 0.02, 0.08, name="adamw_lr", when={"optimizer.name": "adamw"}),
    )
    s.sampler = "tpe"
    s.tpe_startup_trials = 2
    s.pruner = "hyperband"
    s.n_trials = 4
    return s
"""


def test_tpe_hyperband_failure_recorded_and_study_goes_on(tmp_path):
    cfg = write_sweep(tmp_path, TPE_COND)
    sweep = load_sweep(str(cfg))
    assert sweep.name == "tpe_cond"

    class FailSecond(FakeTrain):
        def __call__(self, config, workdir, *, report_fn=None):
            if len(self.calls) == 1:
                self.calls.append((config.optimizer.lr, workdir))
                raise RuntimeError("boom: out of memory")
            return super().__call__(config, workdir, report_fn=report_fn)

    fake = FailSecond()
    out = SweepRunner(sweep, tmp_path / "s", train_fn=fake, log=lambda m: None).run()
    assert out["failed"] == 1 and out["complete"] + out["pruned"] == 3 and len(fake.calls) == 4
    study = optuna.load_study(study_name="tpe_cond", storage=f"sqlite:///{tmp_path}/s/study.db")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and "boom: out of memory" in failed[0].user_attrs["error"]
    for t in study.trials:
        assert ("optimizer.momentum" in t.params) == (t.params["optimizer.name"] == "sgd")


def test_dead_worker_trial_is_requeued(tmp_path):
    """A trial left RUNNING by a killed worker (its pid is gone) is failed and retried."""
    cfg = write_sweep(tmp_path, LR_GRID)
    sweep = load_sweep(str(cfg))
    runner = SweepRunner(sweep, tmp_path / "s", train_fn=FakeTrain(), log=lambda m: None)
    trial = runner.study.ask()
    trial.suggest_float("optimizer.lr", 0.01, 0.2, log=True)  # grid assigns a value
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", dead.pid)
    trial.set_user_attr("pid_trial", trial.number)  # as a worker records the attempt it runs
    out = runner.run()
    assert out["complete"] + out["pruned"] == 4
    study = runner.study
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert any(t.system_attrs.get("failed_trial") == 0 for t in study.trials[1:])


def test_bad_override_fails_before_any_trial(tmp_path):
    from edgejax.train import ConfigError

    cfg = write_sweep(tmp_path, LR_GRID)
    with pytest.raises(ConfigError, match="num_epoch"):
        SweepRunner(
            load_sweep(str(cfg)),
            tmp_path / "s",
            overrides=[("num_epoch", 2)],
            train_fn=FakeTrain(),
            log=lambda m: None,
        )


def test_cli_runs_and_resumes(tmp_path, monkeypatch, capsys):
    """``python -m edgejax.sweep`` end to end (in-process, the training loop swapped for the
    stand-in): progress per trial, --set / --config.KEY overrides, --n-trials, resume with nothing repeated."""
    import signal

    import edgejax.train
    from edgejax.sweep.__main__ import main

    cfg = write_sweep(tmp_path, LR_GRID)
    fake = FakeTrain()
    monkeypatch.setattr(edgejax.train, "run", fake)
    old = signal.getsignal(signal.SIGTERM)
    try:
        # --set KEY=VALUE, or --config.KEY=VALUE as edgejax.train takes it
        args = [
            "--config",
            str(cfg),
            "--study-dir",
            str(tmp_path / "s"),
            "--set",
            "num_epochs=2",
            "--config.augment.label_smoothing=0.1",
            "--no-compile-cache",
            "--pruner",
            "none",
        ]
        assert main(args + ["--n-trials", "2"]) == 0
        assert len(fake.calls) == 2
        assert main(args) == 0  # the rest of the grid
        assert len(fake.calls) == 4 and len({lr for lr, _ in fake.calls}) == 4
        assert main(args) == 0 and len(fake.calls) == 4
    finally:
        signal.signal(signal.SIGTERM, old)
    out = capsys.readouterr().out
    assert out.count(" start (") == 4 and "complete: top1" in out
    rows = eval_records(fake.calls[0][1])
    assert [r["epoch"] for r in rows] == [1.0, 2.0] and rows[-1]["top1"] < 100 - 1  # smoothing
    assert main(["--config", str(tmp_path / "missing.py"), "--study-dir", str(tmp_path)]) == 2


def test_missing_dataset_fails_before_any_trial(tmp_path):
    from edgejax.train import ConfigError

    cfg = write_sweep(tmp_path, LR_GRID)
    with pytest.raises(ConfigError, match="does not exist"):
        SweepRunner(
            load_sweep(str(cfg)),
            tmp_path / "s",
            overrides=[("data.dataset", str(tmp_path / "no_such_data"))],
        )


class FakeGroupTrain:
    """Stands in for ``edgejax.train.run_group``: :class:`FakeTrain`'s trials advanced together,
    epoch by epoch, each reporting through ``report_fn(k, epoch, metrics)``; a pruned trial stops
    while the others go on. ``interrupt_at``: (lr, epoch) at which to raise KeyboardInterrupt."""

    QUALITY = {0.01: 40.0, 0.05: 100.0, 0.1: 90.0, 0.2: 70.0}

    def __init__(self, interrupt_at=None):
        self.groups = []
        self.interrupt_at = interrupt_at

    def __call__(self, configs, workdirs, *, report_fn=None, group_dir=None, mode="auto"):
        lrs = [float(c.optimizer.lr) for c in configs]
        self.groups.append((lrs, list(workdirs), group_dir))
        status = ["completed"] * len(configs)
        tops = [None] * len(configs)
        for w, c in zip(workdirs, configs):
            os.makedirs(w, exist_ok=True)
            with open(os.path.join(w, "config.json"), "w") as f:
                json.dump(c.to_dict(), f)
        epochs = int(configs[0].num_epochs)
        for epoch in range(1, epochs + 1):
            for k, (c, w) in enumerate(zip(configs, workdirs)):
                if status[k] != "completed" or epoch <= len(eval_records(w)):
                    continue
                if (
                    self.interrupt_at
                    and abs(lrs[k] - self.interrupt_at[0]) < 1e-12
                    and epoch == self.interrupt_at[1]
                ):
                    self.interrupt_at = None
                    raise KeyboardInterrupt
                tops[k] = self.QUALITY.get(lrs[k], FakeTrain.quality(c)) * epoch / epochs
                row = {"kind": "eval", "step": epoch * 10, "epoch": float(epoch), "top1": tops[k]}
                with open(os.path.join(w, "metrics.jsonl"), "a") as f:
                    f.write(json.dumps(row) + "\n")
                if report_fn is not None and report_fn(k, epoch, dict(row)):
                    status[k] = "pruned"
        return [
            {
                "status": s,
                "epoch": float(epochs),
                "best_top1": t,
                "num_params": 1,
                "model": c.model.name,
                "group_size": len(configs),
                "group_dir": group_dir,
            }
            for s, t, c in zip(status, tops, configs)
        ]


def test_grouped_sweep_asks_in_batches_prunes_and_resumes(tmp_path):
    cfg = write_sweep(tmp_path, LR_GRID)
    study_dir = tmp_path / "study"
    fake = FakeGroupTrain(interrupt_at=(0.05, 3))
    runner = SweepRunner(
        load_sweep(str(cfg)), study_dir, group_train_fn=fake, group_size=2, log=lambda m: None
    )
    first = runner.run()
    assert first["interrupted"]
    assert [len(lrs) for lrs, _, _ in fake.groups] == [2, 2]  # two trials asked at once
    done = set(fake.groups[0][0])
    interrupted = fake.groups[1]
    assert 0.05 in interrupted[0] and not done & set(interrupted[0])
    # resume: the interrupted group's trials are re-asked (same parameters, same workdirs and
    # group directory) and finish; the first group's are not repeated
    fake2 = FakeGroupTrain()
    second = SweepRunner(
        load_sweep(str(cfg)), study_dir, group_train_fn=fake2, group_size=2, log=lambda m: None
    ).run()
    assert not second["interrupted"]
    assert second["complete"] + second["pruned"] == 4 and second["failed"] == 0
    assert second["pruned"] == 1  # 0.01 falls below the first group's median at epoch 2
    assert len(fake2.groups) == 1 and sorted(fake2.groups[0][0]) == sorted(interrupted[0])
    assert sorted(fake2.groups[0][1]) == sorted(interrupted[1])
    assert fake2.groups[0][2] == interrupted[2]
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{study_dir}/study.db")
    S = optuna.trial.TrialState
    finished = [t for t in study.trials if t.state in (S.COMPLETE, S.PRUNED)]
    assert sorted(t.params["optimizer.lr"] for t in finished) == [0.01, 0.05, 0.1, 0.2]
    assert study.best_trial.params["optimizer.lr"] == 0.05
    assert all(t.user_attrs["group_size"] == 2 for t in finished)
    fake3 = FakeGroupTrain()
    SweepRunner(
        load_sweep(str(cfg)), study_dir, group_train_fn=fake3, group_size=2, log=lambda m: None
    ).run()
    assert fake3.groups == []


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path):
    cfg = write_sweep(tmp_path, LR_GRID)
    with pytest.raises(
        SweepConfigError,
        match=r"^cannot open the study storage "
        r"postgresql://edgejax:\*\*\*@127.0.0.1:1/none: "
        r"connection failed: .*refused",
    ):
        SweepRunner(
            load_sweep(str(cfg)),
            tmp_path / "s",
            train_fn=FakeTrain(),
            storage="postgresql://edgejax:secret@127.0.0.1:1/none",
            log=lambda m: None,
        )


def test_workers_racing_to_create_the_tables_open_the_storage(tmp_path, monkeypatch):
    # Two workers started together on a new PostgreSQL database: the one that loses the race to
    # create Optuna's tables gets a catalog unique-constraint violation; it opens the storage
    # again (the tables exist by then). Any other database error is said at once.
    import optuna
    import sqlalchemy.exc

    from edgejax.sweep import study

    real, calls = optuna.storages.RDBStorage, []
    race = 'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'

    def flaky(url, **kw):
        calls.append(url)
        if len(calls) == 1:
            raise sqlalchemy.exc.IntegrityError("CREATE TABLE studies", {}, Exception(race))
        return real(url, **kw)

    import inspect

    flaky.__signature__ = inspect.signature(real)  # make_storage picks the callback's name by it
    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky)
    monkeypatch.setattr(study.time, "sleep", lambda s: None)
    url = f"sqlite:///{tmp_path / 'race.db'}"
    assert isinstance(study.make_storage(url), real) and len(calls) == 2

    def broken(url, **kw):
        calls.append(url)
        raise sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed"))

    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(SweepConfigError, match="NOT NULL constraint failed"):
        study.make_storage(url)
    assert len(calls) == 1
