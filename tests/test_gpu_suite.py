"""benchmarks/gpu_suite.py orchestrates the GPU figures; here its phases run on the CPU, tiny."""

import json

import pytest
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.py"


def _suite(*args, **kw):
    return subprocess.run(
        [sys.executable, str(SUITE), *args], capture_output=True, text=True, cwd=REPO, **kw
    )


def test_bad_arguments_are_named():
    p = _suite("--phases", "infer,warmup")
    assert p.returncode == 2 and "unknown phase(s) warmup" in p.stderr
    p = _suite("--models", "repvgg_a9")
    assert p.returncode == 2 and "repvgg_a9" in p.stderr
    p = _suite("--baseline", "no/such/timm_baseline.py")
    assert p.returncode == 2 and "no such file" in p.stderr


def test_precompiled_programs_are_loaded_not_compiled(tmp_path):
    """The precompile workers fill the cache; the timed phases then load every program from it
    (the cold compile takes seconds, a cache load a fraction of it)."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    p = _suite(
        "--models",
        "mobilenetv3_small_050",
        "--batch",
        "2",
        "--resolution",
        "32",
        "--dtype",
        "float32",
        "--precompile",
        "2",
        "--phases",
        "precompile,infer,deploy",
        "--budget-s",
        "300",
        "--out-dir",
        str(tmp_path),
        env=env,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    suite = json.loads((tmp_path / "suite.json").read_text())
    cold = {(r["batch"], r["deploy"]): r["compile_s"] for r in suite["precompile"]}
    assert set(cold) == {(2, False), (1, False), (1, True)}
    timed = suite["infer"] + suite["deploy"]
    assert sorted((r["batch_size"], r["deploy"]) for r in timed) == [
        (1, False),
        (1, True),
        (2, False),
    ]
    for r in timed:
        assert r["lat_ms_p50"] > 0
        assert r["compile_s"] < cold[(r["batch_size"], r["deploy"])], r
    assert "| mobilenetv3_small_050 |" in p.stdout and "edgejax b=2 img/s" in p.stdout
    assert (tmp_path / "xla-cache").is_dir()


@pytest.mark.slow
def test_distill_phase_times_student_and_teacher(tmp_path):
    p = _suite(
        "--models",
        "mobilenetv3_small_050",
        "--batch",
        "4",
        "--resolution",
        "32",
        "--dtype",
        "float32",
        "--phases",
        "train,distill",
        "--distill-students",
        "mobilenetv3_small_050",
        "--distill-teacher",
        "mobilenetv3_small_075",
        "--train-steps",
        "2",
        "--budget-s",
        "400",
        "--out-dir",
        str(tmp_path),
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    suite = json.loads((tmp_path / "suite.json").read_text())
    (rec,) = suite["distill"]
    assert rec["teacher"] == "mobilenetv3_small_075" and rec["img_s"] > 0
    assert (
        "## Online distillation" in p.stdout
        and "| mobilenetv3_small_050 | mobilenetv3_small_075 |" in p.stdout
    )
