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
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=9m", f"edgejax-{uuid.uuid4().hex[:8]}",
                        str(mnt)], capture_output=True, text=True)
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
