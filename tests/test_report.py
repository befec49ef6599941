"""edgejax.report: tables and plots from a (stand-in) study, plain runs and bench JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

from edgejax.report import build_report
from edgejax.sweep import SweepRunner, load_sweep
from test_sweep import FakeTrain, write_sweep  # noqa: E402  (tests/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]

STACK = """
def get_config(arg=None):
    s = sweep_config()
    s.name = "augment_stack_fake"
    s.base = "train_cfg.py"
    s.space = (presets("augment_stack", cumulative([
        ("baseline", {}),
        ("+randaugment", {"augment.rand_augment": True}),
        ("+mixup", {"augment.mixup_alpha": 0.8}),
        ("+label_smoothing", {"augment.label_smoothing": 0.1}),
    ])),)
    s.sampler = "grid"
    s.pruner = "none"
    return s
"""


def _plain_run(path: Path, model: str, recipe: str, top1: float):
    path.mkdir(parents=True)
    aug = {
        "rand_augment": recipe == "optimized",
        "mixup_alpha": 0.8 if recipe == "optimized" else 0.0,
        "cutmix_alpha": 0.0,
        "label_smoothing": 0.1 if recipe == "optimized" else 0.0,
        "random_erasing": 0.0,
    }
    (path / "config.json").write_text(json.dumps({"model": {"name": model}, "augment": aug}))
    with open(path / "metrics.jsonl", "w") as f:
        for e in (1, 2):
            f.write(
                json.dumps(
                    {"kind": "train", "step": e * 10, "epoch": e - 0.5, "loss": 2.0 / e, "lr": 0.1}
                )
                + "\n"
            )
            f.write(
                json.dumps(
                    {
                        "kind": "eval",
                        "step": e * 10,
                        "epoch": float(e),
                        "top1": top1 * e / 2,
                        "top5": 99.0,
                        "loss": 1.0 / e,
                    }
                )
                + "\n"
            )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    cfg = write_sweep(tmp, STACK)
    study_dir = tmp / "aug"
    SweepRunner(load_sweep(str(cfg)), study_dir, train_fn=FakeTrain(), log=lambda m: None).run()
    runs = tmp / "runs"
    _plain_run(runs / "repvgg_base", "repvgg_a2", "baseline", 70.0)
    _plain_run(runs / "repvgg_opt", "repvgg_a2", "optimized", 74.5)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    preds = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 10, 200))
    np.savez(
        runs / "repvgg_opt" / "predictions.npz",
        labels=labels,
        preds=preds,
        class_names=np.array([f"c{i}" for i in range(10)]),
    )
    bench = tmp / "bench.json"
    bench.write_text(
        json.dumps(
            [
                {
                    "model": "repvgg_a2",
                    "batch_size": 1,
                    "latency_ms_p50": 3.1,
                    "throughput_img_s": 320.0,
                    "params": 28_210_600,
                    "gflops": 5.7,
                    "size_mb": 107.6,
                    "device": "cpu",
                },
                {
                    "model": "mobilenetv3_small_050",
                    "batch_size": 1,
                    "latency_ms_p50": 0.9,
                    "throughput_img_s": 1100.0,
                    "params": 1.59,
                    "gflops": 0.02,
                    "size_mb": 6.1,
                },
            ]
        )
    )
    out = tmp / "out"
    res = build_report(
        [study_dir, runs],
        out,
        bench=[bench],
        confusion=str(runs / "repvgg_opt"),
        log=lambda m: None,
    )
    return res, out


def test_tables_hold_the_trial_results(report):
    res, out = report
    t = res["tables"]
    aug = t["augment"].splitlines()
    labels = [line.split("|")[2].strip() for line in aug[2:]]
    assert labels == ["baseline", "+randaugment", "+mixup", "+label_smoothing"]
    # FakeTrain: top1 = 100 - 200|lr - 0.05| - 10 * label_smoothing at the last epoch, lr 0.1
    assert "90.00" in aug[2] and "89.00" in aug[5] and "-1.00" in aug[5]
    assert "repvgg_a2" in t["recipes"] and "+4.50" in t["recipes"]
    assert "3.10" in t["bench"] and "28.21" in t["bench"] and "74.50" in t["bench"]
    trials = t["trials:augment_stack_fake"]
    assert trials.count("| complete |") == 4
    md = (out / "README.md").read_text()
    for heading in (
        "## Baseline vs optimized",
        "## Cumulative augmentation",
        "## Deployment",
        "## Study augment_stack_fake",
        "## Confusion matrix",
    ):
        assert heading in md


def test_plots_exist(report):
    res, out = report
    names = {p.name for p in res["plots"]}
    for name in (
        "pareto.png",
        "augment_stack_fake_curves.png",
        "augment_stack_fake_history.png",
        "augment_stack_fake_importance.png",
        "confusion_repvgg_opt.png",
        "repvgg_base.png",
        "augment_stack_fake_0.png",
    ):
        assert name in names, (name, sorted(names))
    for p in res["plots"]:
        assert p.exists() and p.stat().st_size > 2000 and p.read_bytes()[:4] == b"\x89PNG"
        assert p.stat().st_size < 300_000


def test_cli(report, tmp_path):
    _, out = report
    study_dir = out.parent / "aug"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgejax.report",
            str(study_dir),
            "--out",
            str(tmp_path / "r"),
            "--confusion",
            "none",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "README.md").exists()
    from edgejax.report.__main__ import main

    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "r2")]) == 2


def test_torn_metrics_are_read_around(tmp_path, caplog):
    """A torn last line (a killed run) is skipped quietly; damaged lines elsewhere are named."""
    from edgejax.sweep.study import read_metrics

    (tmp_path / "metrics.jsonl").write_bytes(
        b'{"kind": "eval", "step": 1, "top1": 10.0}\n\xff\xfe garbage\n[1, 2]\n'
        b'{"kind": "eval", "step": 2, "top1": 20.0}\n{"kind": "eval", "st'
    )
    with caplog.at_level("WARNING", logger="edgejax"):
        rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'metrics.jsonl'}: skipped 2 unreadable line(s): 2, 3"
    ]
