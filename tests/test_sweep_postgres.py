"""Sweep workers as separate processes sharing one study on a real PostgreSQL server: one is
SIGKILLed mid-trial and started again; every trial must finish exactly once, and the killed one
resume from where it was.

The server comes from ``EDGEJAX_TEST_POSTGRES`` (a SQLAlchemy URL); ``.ci/run`` starts one on
localhost and sets it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from edgejax.sweep import eval_records  # noqa: E402
from test_sweep import write_sweep  # noqa: E402  (tests/ is on sys.path)

URL = os.environ.get("EDGEJAX_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(
    not URL,
    reason="EDGEJAX_TEST_POSTGRES is not set: no PostgreSQL server to test against "
    "(.ci/run starts one on localhost and sets it)",
)

WORKER = str(Path(__file__).with_name("sweep_worker.py"))
EPOCHS = 4

RANDOM_LR = """
def get_config(arg=None):
    s = sweep_config()
    s.name = {name!r}
    s.base = "train_cfg.py"
    s.space = (loguniform("optimizer.lr", 0.01, 0.2),)
    s.sampler = "random"
    s.pruner = "none"
    s.n_trials = {n_trials}
    return s
"""


def _starts(workdir: Path) -> list[dict]:
    path = workdir / "starts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _worker(cfg, study_dir, group_size, epoch_s, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            WORKER,
            str(cfg),
            str(study_dir),
            URL,
            str(group_size),
            str(epoch_s),
            *extra,
        ],
        cwd=cfg.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _saved_steps(workdir: Path) -> list[int]:
    """Steps of the trial's committed checkpoints (orbax writes ``<step>`` when one is done)."""
    return sorted(int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit())


def _kill_mid_trial(
    proc, study_dir: Path, min_epochs: int, timeout: float = 120.0, need_checkpoint: bool = False
) -> Path:
    """SIGKILL ``proc`` once a trial it started has ``min_epochs`` evaluations (and, with
    ``need_checkpoint``, a committed checkpoint) -> its workdir."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, f"the worker exited early:\n{proc.stdout.read()}"
        for workdir in sorted((study_dir / "trials").glob("*")):
            mine = [s for s in _starts(workdir) if s["pid"] == proc.pid]
            if (
                mine
                and len(eval_records(workdir)) >= min_epochs
                and (not need_checkpoint or _saved_steps(workdir))
            ):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return workdir
        time.sleep(0.05)
    raise AssertionError("no trial of the worker reached its evaluations in time")


def _finish(*procs, timeout=180) -> str:
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        outs.append(out)
    return "\n".join(outs)


def _check_every_trial_once(name, n_trials, killed: Path, min_epochs, killed_pid, epochs=EPOCHS):
    S = optuna.trial.TrialState
    study = optuna.load_study(study_name=name, storage=_driver(URL))
    trials = study.get_trials()
    complete = [t for t in trials if t.state == S.COMPLETE]
    failed = [t for t in trials if t.state == S.FAIL]
    assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING, S.PRUNED)]
    # none lost: the study holds n_trials finished trials; none duplicated: each is its own root
    # trial (a retry stands for the attempt it replaces) with its own workdir
    assert len(complete) == n_trials
    roots = [int(t.system_attrs.get("failed_trial", t.number)) for t in complete]
    assert len(set(roots)) == n_trials
    assert len({t.user_attrs["workdir"] for t in complete}) == n_trials
    # only the killed worker's trials failed, none with an error, each retried exactly once
    assert failed and all("error" not in t.user_attrs for t in failed)
    assert sorted(t.number for t in failed) == sorted(
        r for r in roots if r not in {t.number for t in complete}
    )
    assert all(t.user_attrs["pid"] == killed_pid for t in failed)
    retried = {t.number: t for t in complete if "failed_trial" in t.system_attrs}
    assert sorted(int(t.system_attrs["failed_trial"]) for t in retried.values()) == sorted(
        t.number for t in failed
    )
    for t in retried.values():  # a retry samples nothing: it takes its first attempt's values
        first = trials[int(t.system_attrs["failed_trial"])]
        assert t.params == first.params
    # every trial trained each epoch once; the killed one went on from the epoch it had reached
    for t in complete:
        workdir = Path(t.user_attrs["workdir"])
        assert [r["epoch"] for r in eval_records(workdir)] == [float(e + 1) for e in range(epochs)]
    starts = _starts(killed)
    assert starts[0] == {"pid": killed_pid, "first_epoch": 1}
    assert len(starts) == 2 and starts[1]["pid"] != killed_pid
    assert starts[1]["first_epoch"] >= min_epochs + 1
    # different trials drew different values, though every worker seeds its sampler alike
    lrs = [t.params["optimizer.lr"] for t in complete]
    assert len(set(lrs)) == n_trials


def _driver(url):
    from edgejax.sweep.study import _driver_url

    return _driver_url(url)


@pytest.mark.parametrize("group_size", [1, 2], ids=["single", "groups"])
def test_two_workers_one_killed_every_trial_once(tmp_path, group_size):
    name = f"pg_{group_size}_{uuid.uuid4().hex[:8]}"
    n_trials = 6
    cfg = write_sweep(tmp_path, RANDOM_LR.format(name=name, n_trials=n_trials))
    study_dir = tmp_path / "study"
    a = _worker(cfg, study_dir, group_size, 0.25)
    b = _worker(cfg, study_dir, group_size, 0.25)
    procs = [a, b]
    try:
        killed = _kill_mid_trial(a, study_dir, min_epochs=2)
        procs.append(_worker(cfg, study_dir, group_size, 0.25))
        _finish(b, procs[-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    _check_every_trial_once(name, n_trials, killed, 2, a.pid)
    optuna.delete_study(study_name=name, storage=_driver(URL))


REAL_TRAIN = """
from edgejax.train import base_config

def get_config(arg=None):
    c = base_config()
    c.data.image_size = 32
    c.global_batch_size = 32
    c.num_epochs = 3.0
    c.log.progress = False
    c.log.tensorboard = False
    c.checkpoint.async_save = False
    return c
"""


@pytest.mark.slow
def test_two_real_training_workers_one_killed_resumes_from_its_checkpoint(tmp_path):
    """The same with ``edgejax.train``: the retried trial restores the killed one's checkpoint
    (its run says so) and ends with every epoch evaluated once."""
    name = f"pg_real_{uuid.uuid4().hex[:8]}"
    n_trials = 3
    cfg = write_sweep(tmp_path, RANDOM_LR.format(name=name, n_trials=n_trials))
    (tmp_path / "train_cfg.py").write_text(REAL_TRAIN)
    study_dir = tmp_path / "study"
    a = _worker(cfg, study_dir, 1, 0, "real")
    b = _worker(cfg, study_dir, 1, 0, "real")
    procs = [a, b]
    try:
        killed = _kill_mid_trial(a, study_dir, min_epochs=1, timeout=300, need_checkpoint=True)
        saved = _saved_steps(killed)[-1]
        procs.append(_worker(cfg, study_dir, 1, 0, "real"))
        out = _finish(b, procs[-1], timeout=600)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert f"resuming {killed} at step {saved}" in out, out
    _check_every_trial_once(name, n_trials, killed, 1, a.pid, epochs=3)
    optuna.delete_study(study_name=name, storage=_driver(URL))
