"""Faults real runs meet, tried for real: a disk that fills up mid-run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """
from edgejax.train.config import base_config
def get_config(arg=None):
    c = base_config()
    c.data.image_size = 32
    c.data.hflip = 0.0
    c.global_batch_size = 16
    c.num_steps = 4
    c.checkpoint.every_steps = 2
    c.checkpoint.keep = 3
    c.checkpoint.keep_best = False
    c.eval.every_steps = 100
    c.log.progress = False
    c.log.tensorboard = False
    return c
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 9 MB tmpfs: one checkpoint of the tiny run fits, two do not."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=9m", f"edgejax-{uuid.uuid4().hex[:8]}", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()}); needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow  # two training runs in subprocesses (about 35 s)
def test_disk_full_while_saving_says_so_once_and_resumes(tmp_path, small_disk):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(CONFIG)
    work = small_disk / "run"
    cmd = [sys.executable, "-m", "edgejax.train", "--config", str(cfg), "--workdir", str(work)]
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 1, p.stderr[-3000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(errors) <= 3, p.stderr[-3000:]  # no traceback flood
    (line,) = [ln for ln in errors if ln.startswith("edgejax.train: error:")]
    # the save of step 4 fails in the background; it is reported at the next save or at the end
    assert line.startswith("edgejax.train: error: could not write a checkpoint")
    assert f"to {work / 'checkpoints'}: no space left on device (" in line, line
    assert f"Last good checkpoint: step 2 in {work / 'checkpoints'}" in line, line
    # more space, the same command: resumes from step 2 (the partial save is moved aside)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "4.orbax-checkpoint-tmp" in p.stdout and "did not finish" in p.stdout
    assert "completed mobilenetv3_small_050 step 4/4" in p.stdout
    assert sorted(n for n in os.listdir(work / "checkpoints") if n.isdigit()) == ["2", "4"]
    evals = [ln for ln in open(work / "metrics.jsonl") if '"kind": "eval"' in ln]
    assert 1 <= len(evals) <= 2 and all('"step": 4' in ln for ln in evals)


def test_unwritable_workdir_fails_before_compiling(tmp_path):
    from edgejax.train import ConfigError, base_config, run

    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):  # root writes anywhere: use a file where a folder should be
            os.chmod(ro, 0o700)
            ro = tmp_path / "file"
            ro.write_text("")
        c = base_config()
        with pytest.raises(ConfigError, match=f"workdir {ro / 'w'} is not writable"):
            run(c, str(ro / "w"))
    finally:
        os.chmod(tmp_path / "ro", 0o700)


def _tiny(**kw):
    from test_train_core import tiny_config  # tests/ is on sys.path

    return tiny_config(**kw)


def test_images_unreadable_mid_run_are_skipped_and_counted(tmp_path, capsys):
    """Image files deleted or overwritten after the run started (a flaky network disk, a
    cleanup job): training replaces each with another record, evaluation leaves it unscored, and
    the run says how many, in its log, metrics and summary."""
    from edgejax.data import testing as X
    from edgejax.sweep import eval_records
    from edgejax.train import run

    data = tmp_path / "data"
    classes = tuple("abcdefghij")  # ten, as the digits of the other tiny runs: one program
    X.write_good_tree(data / "train", classes=classes, per_class=4, size=(40, 40))
    X.write_good_tree(data / "val", classes=classes, per_class=1, size=(40, 40))
    train_a = sorted((data / "train" / "a").iterdir()) + sorted((data / "train" / "b").iterdir())
    val_b = sorted((data / "val" / "b").iterdir()) + sorted((data / "val" / "c").iterdir())

    calls = []

    def damage(epoch, metrics):  # after the first evaluation
        calls.append(epoch)
        if len(calls) == 1:
            for p in train_a[:4]:
                p.unlink()
            train_a[4].write_bytes(b"not an image")
            val_b[0].unlink()
            val_b[1].write_bytes(b"\xff\xd8\xff truncated")
        return False

    c = _tiny(**{"data.dataset": str(data), "num_steps": 12, "eval.every_steps": 6})
    s = run(c, str(tmp_path / "run"), report_fn=damage)
    assert s["status"] == "completed"
    assert s["skipped_records"]["eval"] == 2  # the evaluation after the damage
    # 5 of 40 images gone; steps 7-12 were read after the damage but for the batches already
    # prepared (up to 4 ahead)
    assert s["skipped_records"]["train"] >= 1
    rows = eval_records(tmp_path / "run")
    assert [r.get("skipped", 0) for r in rows] == [0, 2]
    out = "".join(capsys.readouterr())
    assert "edgejax.train: unreadable records skipped: " in out
    assert ", 2 in this evaluation (not scored)" in out


@pytest.mark.slow  # three training runs; the loader's own restart and error are default tests
def test_data_workers_lost_for_good_save_the_step_and_the_rerun_resumes_exactly(
    tmp_path, monkeypatch
):
    """Data workers that keep dying (here: the loader raising as it does after its restarts)
    stop the run with one message; the step reached is saved, and re-running the same command
    ends where an uninterrupted run ends, bit for bit."""
    import numpy as np
    import jax
    from edgejax.data import DataWorkerError, pipeline
    from edgejax.train import run
    from edgejax.train.checkpoint import load_weights

    c = _tiny(**{"num_steps": 5, "eval.every_steps": 100, "checkpoint.every_steps": 100})
    run(c, str(tmp_path / "whole"))

    real_iter = pipeline.Loader.__iter__

    def dying_iter(self):
        for i, batch in enumerate(real_iter(self)):
            if self.name == "train" and i == 3:
                raise DataWorkerError(
                    "train data: worker processes died 4 times (killed by "
                    "SIGKILL), the last at batch 3 of this pass"
                )
            yield batch

    monkeypatch.setattr(pipeline.Loader, "__iter__", dying_iter)
    with pytest.raises(
        DataWorkerError,
        match=r"died 4 times .*Saved step 3 in .*checkpoints: "
        r"run the same command again to resume",
    ):
        run(c, str(tmp_path / "cut"))
    monkeypatch.setattr(pipeline.Loader, "__iter__", real_iter)
    s = run(c, str(tmp_path / "cut"))
    assert s["status"] == "completed" and s["step"] == 5
    a = load_weights(str(tmp_path / "whole" / "checkpoints"))
    b = load_weights(str(tmp_path / "cut" / "checkpoints"))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
