"""edgejax.train in one process: configs, errors, schedules, the step, short runs (CPU, small)."""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from edgejax.train import ConfigError, NonFiniteLossError, base_config, build, run, validate
from edgejax.train.optim import make_schedule, weight_decay_mask
from edgejax.train.recipes import MODEL_TRAITS, RECIPES

REPO = Path(__file__).resolve().parents[1]


def _load_config(path, arg=None):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def tiny_config(model="mobilenetv3_small_050", size=32, **kw):
    c = base_config()
    c.model.name = model
    c.data.image_size = size
    c.data.hflip = 0.0
    c.global_batch_size = 16
    c.num_steps = 2
    c.log.progress = False
    c.log.tensorboard = False
    c.checkpoint.async_save = False
    for k, v in kw.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


# ------------------------------------------------------------------ configs and errors
def test_every_paper_config_validates():
    names = sorted(Path(p).stem for p in glob.glob(str(REPO / "configs" / "*.py")))
    assert set(MODEL_TRAITS) <= set(names) and "quickstart" in names
    from edgejax.layers.constants import STUDY_MODELS

    assert tuple(MODEL_TRAITS) == STUDY_MODELS  # one entry per study model, in its order
    for name in MODEL_TRAITS:
        doc = open(REPO / "configs" / f"{name}.py").read()
        assert "python -m edgejax.train" in doc and "top-1" in doc
        for recipe in RECIPES:
            c = validate(_load_config(REPO / "configs" / f"{name}.py", recipe))
            assert c.model.name == name and c.data.dataset == "imagenet"
    base = _load_config(REPO / "configs" / "repvgg_a2.py")
    assert (
        base.optimizer.name == "sgd" and base.optimizer.lr == 0.1 and base.global_batch_size == 512
    )
    opt = _load_config(REPO / "configs" / "tiny_vit_21m_224.py", "optimized")
    assert opt.optimizer.name == "adamw" and opt.augment.rand_augment and opt.ema.decay > 0
    with pytest.raises(ValueError, match="unknown recipe"):
        _load_config(REPO / "configs" / "repvgg_a2.py", "fast")


def test_unknown_config_key_is_named():
    c = base_config().to_dict()
    c["optimizer"]["lrr"] = 0.1
    with pytest.raises(ConfigError, match=r"'optimizer\.lrr'.*optimizer\.lr"):
        validate(c)
    with pytest.raises(ConfigError, match="optimizer.name"):
        validate(tiny_config(**{"optimizer.name": "adamm"}))


def test_cli_unknown_key_and_missing_imagenet(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), EDGEJAX_IMAGENET="")
    cmd = [
        sys.executable,
        "-m",
        "edgejax.train",
        "--config",
        str(REPO / "configs/repvgg_a2.py"),
        "--workdir",
        str(tmp_path / "w"),
    ]
    p = subprocess.run(
        cmd + ["--config.optimizer.lrr=0.05"], env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode != 0 and "Unknown config key 'optimizer.lrr'" in p.stderr, p.stderr[-2000:]
    # no --workdir: runs/<config stem>; the paper recipes' dtype "auto" is float32 on a CPU
    p = subprocess.run(cmd[:-2], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 1 and "--config.data.dataset=" in p.stderr, p.stderr[-2000:]
    assert "tfds:imagenet2012" in p.stderr
    assert f"workdir {os.path.join('runs', 'repvgg_a2')} " in p.stderr
    assert "dtype auto -> float32 (cpu backend)" in p.stderr
    bad = tmp_path / "bad.py"  # a config file that does not parse: its file and line
    bad.write_text("def get_config(arg=None):\n    c = 1 +\n    return c\n")
    p = subprocess.run(
        cmd[:1] + ["-m", "edgejax.train", "--config", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        p.returncode == 2
        and p.stderr.strip()
        == f"edgejax.train: error: config {bad}, line 2: invalid syntax: c = 1 +"
    ), p.stderr


def test_default_workdir_dtype_auto_and_command_list(capsys):
    from edgejax.__main__ import main as edgejax_main
    from edgejax.train.__main__ import default_workdir
    from edgejax.train.config import resolve_dtype

    assert default_workdir("configs/repvgg_a2.py:optimized") == os.path.join(
        "runs", "repvgg_a2_optimized"
    )
    assert default_workdir("/x/configs/quickstart.py") == os.path.join("runs", "quickstart")
    said = []
    c = resolve_dtype(validate(tiny_config(dtype="auto")), said.append)
    assert c.dtype == "float32" and said == ["edgejax.train: dtype auto -> float32 (cpu backend)"]
    said.clear()
    c = resolve_dtype(validate(tiny_config(dtype="bfloat16")), said.append)
    assert c.dtype == "bfloat16" and len(said) == 1 and "runs as asked" in said[0]
    assert edgejax_main([]) == 0
    out = capsys.readouterr().out
    for name in ("train", "sweep", "report", "bench", "export", "data.prepare"):
        assert f"  {name} " in out


def test_unknown_model_fails_before_compiling(tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown model 'repvgg_a3'.*repvgg_a2"):
        run(tiny_config("repvgg_a3"), str(tmp_path))


def test_a_workdir_holds_one_run(tmp_path, capsys):
    """Re-running a workdir with another config: one line of changed keys (more epochs resumes);
    a config its checkpoints cannot fit: an error naming the keys, before anything compiles."""
    import json
    from edgejax.train.loop import _write_config

    _write_config(tiny_config(), str(tmp_path))
    (tmp_path / "checkpoints" / "220").mkdir(parents=True)  # as a finished run leaves it
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": list("0123456789")}))
    with pytest.raises(ConfigError) as e:
        run(tiny_config("mobilenetv3_small_075", **{"optimizer.name": "adamw"}), str(tmp_path))
    assert str(e.value) == (
        f"{tmp_path} holds a run whose checkpoints cannot be restored into this config "
        f"(model.name 'mobilenetv3_small_050' -> 'mobilenetv3_small_075'; optimizer.name 'sgd' "
        f"-> 'adamw'): give another --workdir, or remove {tmp_path} to start over"
    )
    assert (
        json.loads((tmp_path / "config.json").read_text())["model"]["name"]
        == "mobilenetv3_small_050"
    )  # nothing overwritten
    from edgejax.train.loop import _check_workdir

    _check_workdir(tiny_config(num_steps=8), str(tmp_path), list("0123456789"))
    assert (
        capsys.readouterr().out
        == f"edgejax.train: resuming {tmp_path} with a changed config: num_steps 2 -> 8\n"
    )
    with pytest.raises(ConfigError, match=r"\(classes 10 -> 3\)"):
        _check_workdir(tiny_config(), str(tmp_path), ["a", "b", "c"])
    # as many classes under other names (fine-tuning on other data in the same workdir): said
    _check_workdir(tiny_config(), str(tmp_path), list("0123456798"))
    assert capsys.readouterr().out == (
        f"edgejax.train: {tmp_path} was trained on other class names than the data has (index: "
        f"run / data): 8: 8 / 9, 9: 9 / 8; resuming, its labels now mean the data's\n"
    )


def test_missing_dataset_path(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        run(tiny_config(**{"data.dataset": str(tmp_path / "nope")}), str(tmp_path))


# ------------------------------------------------------------------ optimiser pieces
def test_schedules():
    c = validate(
        tiny_config(
            **{
                "optimizer.lr": 0.1,
                "optimizer.lr_base_batch": 16,
                "schedule.warmup_steps": 10,
                "schedule.min_lr": 0.001,
            }
        )
    )
    lr = make_schedule(c, 10, 110)
    assert float(lr(0)) == 0.0 and abs(float(lr(5)) - 0.05) < 1e-7
    assert abs(float(lr(10)) - 0.1) < 1e-7 and abs(float(lr(110)) - 0.001) < 1e-7
    assert abs(float(lr(60)) - (0.001 + 0.5 * 0.099)) < 1e-6
    c = validate(
        tiny_config(
            **{
                "optimizer.lr": 0.1,
                "optimizer.lr_base_batch": 16,
                "schedule.name": "step",
                "schedule.decay_epochs": 2.0,
                "schedule.decay_rate": 0.5,
            }
        )
    )
    lr = make_schedule(c, 10, 100)
    assert [round(float(lr(s)), 6) for s in (0, 19, 20, 45)] == [0.1, 0.1, 0.05, 0.025]
    c = validate(tiny_config(**{"global_batch_size": 32, "optimizer.lr": 0.1}))
    assert abs(float(make_schedule(c, 10, 100)(0)) - 0.1 * 32 / 512) < 1e-8  # linear scaling


def test_weight_decay_mask():
    params = {
        "conv": {"kernel": np.zeros((3, 3, 4, 4)), "bias": np.zeros(4)},
        "bn": {"scale": np.zeros(4)},
        "blocks": {"attn": {"attention_biases": np.zeros((2, 9))}},
        "ls": {"gamma": np.zeros(4)},
        "head": {"kernel": np.zeros((4, 10))},
    }
    m = weight_decay_mask(params, ("attention_biases",))
    assert m["conv"]["kernel"] and m["head"]["kernel"]
    assert not (
        m["conv"]["bias"]
        or m["bn"]["scale"]
        or m["ls"]["gamma"]
        or m["blocks"]["attn"]["attention_biases"]
    )


# ------------------------------------------------------------------ the step
def _fixed_batch(n=16, size=32, seed=0):
    from edgejax.data import build_source

    src, _ = build_source("digits", "train")
    import cv2

    idx = np.random.default_rng(seed).choice(len(src), n, replace=False)
    imgs = np.stack([cv2.resize(src[i][0], (size, size)) for i in idx])
    return {"image": imgs.astype(np.uint8), "label": np.array([src[i][1] for i in idx], np.int32)}


def test_loss_decreases_on_a_fixed_batch():
    c = tiny_config(
        **{
            "optimizer.name": "adamw",
            "optimizer.lr": 2e-3,
            "optimizer.lr_scaling": "none",
            "schedule.name": "constant",
            "optimizer.clip_grad_norm": 1.0,
            "ema.decay": 0.9,
        }
    )
    r = build(c, num_classes=10)
    batch = r.put_batch(_fixed_batch())
    state, losses = r.state, []
    for _ in range(8):
        state, m = r.train_step(state, batch)
        losses.append(float(m["loss"]))
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses
    assert int(state.step) == 8 and state.ema_params is not None
    sums = r.eval_step(
        state.params,
        state.batch_stats,
        state.model_state,
        r.put_batch(dict(_fixed_batch(), mask=np.ones(16, bool))),
    )
    assert float(sums["count"]) == 16 and 0 <= float(sums["top1"]) <= 16


@pytest.mark.parametrize(
    "model,size,extra",
    [
        ("repvgg_a0", 32, {"optimizer.nesterov": True, "optimizer.weight_decay": 1e-4}),
        (
            "convnext_atto",
            32,
            {
                "optimizer.name": "lamb",
                "model.drop_path_rate": 0.1,
                "optimizer.grad_accum_steps": 2,
            },
        ),
        (
            "mobilevitv2_050",
            64,
            {
                "optimizer.name": "adamw",
                "augment.mixup_alpha": 0.8,
                "augment.cutmix_alpha": 1.0,
                "augment.label_smoothing": 0.1,
                "ema.decay": 0.99,
                "global_batch_size": 8,
            },
        ),
    ],
)
def test_short_run_three_families(tmp_path, model, size, extra):
    c = tiny_config(model, size, **extra)
    s = run(c, str(tmp_path))
    assert s["status"] == "completed" and s["step"] == 2
    ev = s["last_eval"]
    assert ev["count"] == 359 and 0 <= ev["top1"] <= 100 and np.isfinite(ev["loss"])
    assert ("ema_top1" in ev) == (c.ema.decay > 0)
    assert os.path.exists(tmp_path / "config.json") and os.path.exists(tmp_path / "metrics.jsonl")
    assert os.path.isdir(tmp_path / "checkpoints" / "2") and os.path.isdir(tmp_path / "best")
    if model == "repvgg_a0":  # a run's weights come back as a plain model (export --checkpoint)
        from flax import nnx
        from edgejax.train.checkpoint import load_model, load_weights

        m = load_model(str(tmp_path))
        assert m.num_classes == 10 and type(m).__name__ == "RepVGG"
        w = load_weights(str(tmp_path / "best"))
        want = w["ema_params"] if w.get("ema_params") is not None else w["params"]
        got = nnx.to_pure_dict(nnx.state(m, nnx.Param))

        def flat(tree):  # orbax restores list indices as str keys: compare by path string
            return {
                "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
                for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]
            }

        got, want = flat(got), flat(want)
        assert got.keys() == want.keys()
        for k in got:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        _predict_from_run(tmp_path, m)
        _validate_run(tmp_path, ev)


def _validate_run(workdir, last_eval):
    # edgejax.validate on the run and on its ONNX export: the trainer's own evaluation numbers
    import contextlib, io, json
    from edgejax.export import main as export
    from edgejax.validate import main as validate

    onnx = str(workdir / "m.onnx")
    assert (
        export(
            [
                "--model",
                "repvgg_a0",
                "--checkpoint",
                str(workdir),
                "--format",
                "onnx",
                "--out",
                onnx,
                "--resolution",
                "32",
                "--dynamic-batch",
            ]
        )
        == 0
    )
    for src in (["--checkpoint", str(workdir)], ["--onnx", onnx]):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert (
                validate(
                    [
                        "--model",
                        "repvgg_a0",
                        *src,
                        "--data",
                        "digits",
                        "--json",
                        "--batch-size",
                        "100",
                    ]
                )
                == 0
            )
        r = json.loads(buf.getvalue())
        assert r["count"] == last_eval["count"] == 359 and r["image_size"] == 32, r
        assert abs(r["top1"] - last_eval["top1"]) < 1e-9, (src, r, last_eval)
        assert abs(r["loss"] - last_eval["loss"]) < 1e-4, (src, r, last_eval)


def _predict_from_run(workdir, model):
    # edgejax.predict on the run: the training data's class names, the model's own logits
    import json
    from PIL import Image
    from edgejax.data import build_source
    from edgejax.predict import main as predict

    src, info = build_source("digits", "train")
    imgs = workdir / "imgs"
    (imgs / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(src[i][0]).save(imgs / ("sub" if i else "") / f"{i}.png")
    (imgs / "broken.png").write_bytes(b"not an image")
    out = workdir / "p.json"
    import contextlib, io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert (
            predict(
                [
                    str(imgs),
                    "--model",
                    "repvgg_a0",
                    "--checkpoint",
                    str(workdir),
                    "--topk",
                    "3",
                    "--json",
                    "--csv",
                    str(out),
                ]
            )
            == 0
        )
    res = json.loads(buf.getvalue())
    assert [r["path"].rsplit("/", 1)[-1] for r in res["predictions"]] == ["0.png", "1.png", "2.png"]
    assert [e["path"].rsplit("/", 1)[-1] for e in res["errors"]] == ["broken.png"]
    names = json.loads((workdir / "classes.json").read_text())["class_names"]
    assert names == info["class_names"]
    from edgejax.data.transforms import center_crop_resize
    import edgejax

    mi = edgejax.model_info("repvgg_a0")
    x = np.stack(
        [
            center_crop_resize(open(r["path"], "rb").read(), 32, 0.875, "bilinear")
            for r in res["predictions"]
        ]
    ).astype(np.float32)
    x = (x - np.asarray(mi["mean"]) * 255) / (np.asarray(mi["std"]) * 255)
    logits = np.asarray(model(x.astype(np.float32)))
    for r, z in zip(res["predictions"], logits):
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        top = np.argsort(-p)[:3]
        assert [t["index"] for t in r["topk"]] == top.tolist()
        assert [t["name"] for t in r["topk"]] == [names[i] for i in top]
        np.testing.assert_allclose([t["prob"] for t in r["topk"]], p[top], rtol=1e-4)
    assert len(out.read_text().splitlines()) == 1 + 3 * 3


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    c = tiny_config(
        **{
            "num_steps": 6,
            "optimizer.lr": 1e30,
            "optimizer.lr_scaling": "none",
            "schedule.name": "constant",
            "checkpoint.every_steps": 1,
            "eval.every_steps": 100,
        }
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step (\d+)") as e:
        run(c, str(tmp_path))
    import re

    bad = int(re.search(r"step (\d+)", str(e.value)).group(1))
    steps = sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit())
    assert steps and max(steps) < bad
    from edgejax.train.checkpoint import load_weights

    w = load_weights(str(tmp_path / "checkpoints"))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(w["params"]))


def test_report_fn_prunes_and_rerun_resumes(tmp_path, caplog):
    seen = []

    def report(epoch, metrics):
        seen.append((epoch, metrics["top1"]))
        return True  # prune at the first evaluation

    c = tiny_config(**{"num_steps": 3, "eval.every_steps": 1})
    s = run(c, str(tmp_path), report_fn=report)
    assert s["status"] == "pruned" and s["step"] == 1 and len(seen) == 1
    s = run(c, str(tmp_path))  # same workdir: resumes from the step-1 checkpoint
    assert s["status"] == "completed" and s["step"] == 3
    rows = [l for l in open(tmp_path / "metrics.jsonl") if '"eval"' in l]
    assert len(rows) == 3

    # The newest checkpoint damaged (its array files truncated), a save that never finished
    # beside it: both moved aside with a line each, the run resumes from step 2.
    ck = tmp_path / "checkpoints"
    assert sorted(p for p in os.listdir(ck) if p.isdigit()) == ["2", "3"]
    data = [
        f
        for f in glob.glob(str(ck / "3" / "state" / "**"), recursive=True)
        if os.path.isfile(f) and os.path.basename(os.path.dirname(f)) == "d"
    ]
    assert data
    for f in data:
        open(f, "r+b").truncate(8)
    (ck / "4.orbax-checkpoint-tmp-123").mkdir()
    import contextlib, io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        s = run(tiny_config(**{"num_steps": 4, "eval.every_steps": 1}), str(tmp_path))
    out = buf.getvalue()
    assert s["status"] == "completed" and s["step"] == 4
    assert (
        f"4.orbax-checkpoint-tmp-123 in {ck} is a save that did not finish; moved it to "
        f"{ck}.damaged/4.orbax-checkpoint-tmp-123" in out
    )
    line = next(l for l in out.splitlines() if "unreadable" in l)
    assert line.startswith(f"edgejax.train: checkpoint step 3 in {ck} is unreadable (")
    assert line.endswith(f"moved it to {ck}.damaged/3 and resuming from the newest readable one")
    assert sorted(os.listdir(f"{ck}.damaged")) == ["3", "4.orbax-checkpoint-tmp-123"]
    rows = [l for l in open(tmp_path / "metrics.jsonl") if '"eval"' in l]
    assert len(rows) == 5  # steps 3 and 4 evaluated again: resumed from step 2

    # Readers (export, validate, predict) pass over an unreadable best/ to the newest readable
    # checkpoint, with one line, and move nothing; with none readable, an error naming the run.
    from edgejax.train.checkpoint import load_model

    def truncate(d):
        for f in glob.glob(str(d / "**"), recursive=True):
            if os.path.isfile(f) and os.path.basename(os.path.dirname(f)) == "d":
                open(f, "r+b").truncate(8)

    # a reader asked for another model than the run trained: named before any weights are read
    with pytest.raises(ValueError, match=f"{tmp_path} is a run of {c.model.name}, not repvgg_a0"):
        load_model(str(tmp_path), "repvgg_a0")
    (best,) = [p for p in os.listdir(tmp_path / "best") if p.isdigit()]
    torn = tmp_path / "best" / best / "state" / "_METADATA"  # torn metadata, arrays intact
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="edgejax"):
        assert load_model(str(tmp_path)).num_classes == 10
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith(f"{tmp_path / 'best'} step {best} is unreadable (")
    assert os.path.isdir(tmp_path / "best" / best)
    truncate(ck)
    with pytest.raises(
        ValueError,
        match=f"no readable checkpoint in {tmp_path} .unreadable: "
        f"best/{best}, checkpoints/4, checkpoints/3",
    ):
        load_model(str(tmp_path))
