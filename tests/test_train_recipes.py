"""The families' own recipes: knowledge distillation (a teacher inside the train step) and
progressive learning (image size and regularisation grown over stages), CPU, small."""

from __future__ import annotations

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import edgejax
from edgejax.train import ConfigError, build, run, run_group, validate
from edgejax.train.checkpoint import load_weights
from edgejax.train.progressive import make_plan, stage_config
from test_train_core import _fixed_batch, tiny_config
from test_train_group import _assert_same, _group_trial

MODEL = "mobilenetv3_small_050"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder of 3 classes (36 train / 12 val images, 40 px, a colour per class)."""
    root = tmp_path_factory.mktemp("recipes_data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c, name in enumerate(("red", "green", "blue")):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 90, (40, 40, 3), np.uint8)
                img[..., c] += 120
                Image.fromarray(img).save(d / f"{i}.png")
    return str(root)


def _config(folder, **kw):
    base = {
        "data.dataset": folder,
        "num_steps": 0,
        "global_batch_size": 12,
        "checkpoint.keep_best": False,
        "data.seed": 0,
    }
    return tiny_config(MODEL, **{**base, **kw})


# ---------------------------------------------------------------- progressive learning
def test_progressive_plan_sizes_batches_epochs_and_ramps():
    c = validate(
        tiny_config(
            MODEL,
            size=64,
            num_steps=0,
            num_epochs=7.0,
            global_batch_size=16,
            **{
                "progressive.stages": 4,
                "progressive.start_size": 32,
                "progressive.batch_sizes": (32, 16, 16, 8),
                "augment.rand_augment": True,
                "augment.ra_magnitude": 15.0,
                "progressive.start_ra_magnitude": 5.0,
                "augment.mixup_alpha": 0.3,
                "progressive.start_mixup_alpha": 0.0,
                "model.drop_rate": 0.3,
                "progressive.start_drop_rate": 0.1,
            },
        )
    )
    plan = make_plan(c, 100, 64)
    # epochs 7 in 4 stages: 0-2, 2-4, 4-5, 5-7 (round(i * 7 / 4)); sizes 32 -> 64 by multiples of 8
    assert [(s.first_epoch, s.end_epoch) for s in plan.stages] == [(0, 2), (2, 4), (4, 5), (5, 7)]
    assert [s.image_size for s in plan.stages] == [32, 40, 56, 64]
    assert [s.batch_size for s in plan.stages] == [32, 16, 16, 8]
    assert [s.steps_per_epoch for s in plan.stages] == [3, 6, 6, 12]
    assert [(s.start_step, s.end_step) for s in plan.stages] == [
        (0, 6),
        (6, 18),
        (18, 24),
        (24, 48),
    ]
    assert plan.total_steps == 48 and plan.steps_per_epoch == 48 / 7
    assert plan.epoch_at(20) == 4 + 2 / 6 and plan.samples_at(20) == 6 * 32 + 12 * 16 + 2 * 16
    # a stage's loader reads its epochs' batches: stage 2 step 7 is batch 2 * 6 + 1 at batch 16
    assert plan.stages[1].loader_step(7) == 13
    assert plan.eval_steps(1.0, 0) == {3, 6, 12, 18, 24, 36, 48}
    assert plan.eval_steps(0.0, 5) == 5
    ramps = [stage_config(c, i) for i in range(4)]
    assert [x.augment.ra_magnitude for x in ramps] == pytest.approx([5, 5 + 10 / 3, 5 + 20 / 3, 15])
    assert [x.augment.mixup_alpha for x in ramps] == pytest.approx([0, 0.1, 0.2, 0.3])
    assert [x.model.drop_rate for x in ramps] == pytest.approx([0.1, 0.1667, 0.2333, 0.3], abs=1e-4)
    assert ramps[0].augment.cutmix_alpha == 0.0  # not ramped: the config's own
    # the stage's values reach the step's hyperparameters (mixing off at alpha 0: probability 0)
    r = build(c, num_classes=3, steps_per_epoch=plan.steps_per_epoch, total_steps=48)
    hp0, hp3 = r.hparams(c, 0), r.hparams(c, 3)
    assert hp0["mix_prob"] == 0 and hp3["mix_prob"] == 1 and hp3["mixup_alpha"] == np.float32(0.3)
    assert hp0["ra_magnitude"] == 5 and hp0["drop_rate"] == np.float32(0.1)
    # without stages: one stage, the loader's stream from step 0
    one = make_plan(validate(tiny_config(MODEL, num_steps=0, num_epochs=2.5)), 100, 32)
    assert len(one.stages) == 1 and one.total_steps == 15 and one.eval_steps(1.0, 0) == 6


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"progressive.start_size": 0}, "start_size must be set"),
        ({"progressive.start_size": 64}, "larger than data.image_size 48"),
        ({"num_steps": 10}, "set num_epochs, not num_steps"),
        ({"num_epochs": 2.0}, "whole number of epochs of at least"),
        ({"num_epochs": 3.5}, "whole number of epochs"),
        ({"progressive.batch_sizes": (16, 16)}, "2 entries for 3 stages"),
        ({"progressive.start_drop_rate": 0.1}, "set model.drop_rate > 0"),
    ],
)
def test_progressive_config_errors(overrides, message):
    kw = {"num_steps": 0, "num_epochs": 3.0, "progressive.stages": 3, "progressive.start_size": 32}
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config(MODEL, size=48, **{**kw, **overrides}))


def test_progressive_stage_below_the_models_minimum_fails_before_compiling(folder, tmp_path):
    c = _config(
        folder,
        size=48,
        num_epochs=2.0,
        **{"progressive.stages": 2, "progressive.start_size": 16},
    )
    with pytest.raises(ConfigError, match="stage 1 trains at 16 px.*at least 32 px"):
        run(c, tmp_path / "w")


def test_progressive_run_one_program_per_stage_resumes_exactly(folder, tmp_path):
    """Three stages (32 / 40 / 48 px, batch 12 / 6 / 12, Mixup ramped in): exactly three train
    programs; SIGTERM in the middle of stage 2 and resumed equals the uninterrupted run bit for
    bit; evaluation at the final size."""
    c = _config(
        folder,
        size=48,
        num_epochs=3.0,
        **{
            "progressive.stages": 3,
            "progressive.start_size": 32,
            "progressive.batch_sizes": (12, 6, 12),
            "augment.mixup_alpha": 0.4,
            "progressive.start_mixup_alpha": 0.0,
            "eval.every_steps": 2,
            "checkpoint.every_steps": 2,
        },
    )
    whole = run(c, tmp_path / "whole")
    assert whole["status"] == "completed" and whole["step"] == whole["total_steps"] == 12
    assert whole["train_programs"] == 3 and whole["eval_image_size"] == 48
    assert [s["image_size"] for s in whole["stages"]] == [32, 40, 48]
    assert [s["steps"] for s in whole["stages"]] == [[0, 3], [3, 9], [9, 12]]

    def sigterm_at_4(epoch, metrics):
        if metrics["step"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # saved at the next step boundary
        return False

    first = run(c, tmp_path / "cut", report_fn=sigterm_at_4)
    assert first["status"] == "preempted" and first["step"] == 4  # inside stage 2 (steps 3-9)
    second = run(c, tmp_path / "cut")
    assert second["status"] == "completed" and second["train_programs"] == 2  # stages 2 and 3
    assert second["last_eval"] == whole["last_eval"]
    _assert_same(
        load_weights(tmp_path / "cut" / "checkpoints"),
        load_weights(tmp_path / "whole" / "checkpoints"),
        "resumed: ",
    )
    # a finished run as a teacher: its weights, its image size and statistics, its head
    from edgejax.distill import load_teacher

    as_teacher = validate(
        tiny_config(
            MODEL, **{"distill.teacher": MODEL, "distill.checkpoint": str(tmp_path / "whole")}
        )
    )
    t = load_teacher(as_teacher, num_classes=3)
    info = edgejax.model_info(MODEL)
    assert t.definition.image_size == 48 and t.definition.mean == tuple(info["mean"])
    assert t.source == str(tmp_path / "whole")
    _assert_same(t.weights[0], load_weights(tmp_path / "whole" / "checkpoints")["params"], "t: ")
    with pytest.raises(ConfigError, match="a 3-class head, the student 10 classes"):
        load_teacher(as_teacher, num_classes=10)
    evals = [json.loads(x) for x in open(tmp_path / "whole" / "metrics.jsonl")]
    assert [e["epoch"] for e in evals if e["kind"] == "eval"] == pytest.approx(
        [2 / 3, 1 + 1 / 6, 1.5, 1 + 5 / 6, 2 + 1 / 3, 3]
    )


# ---------------------------------------------------------------- distillation
def _jit_call(model, x):
    """``model(x)`` as one compiled program (eager, each op would compile on its own)."""
    from flax import nnx

    graphdef, state = nnx.split(model)
    return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))(state, x)


def _save_timm(model, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in edgejax.convert.to_timm(model).items()}, path)


def test_distill_loss_and_teacher_input(tmp_path):
    from edgejax.distill import distill_loss, load_teacher, teacher_logits

    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    T = 2.5

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    ps, pt = softmax(s / T), softmax(t / T)
    want = T * T * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
    np.testing.assert_allclose(distill_loss(s, t, T, hard=False), want, rtol=1e-5)
    hard = -np.mean(np.log(softmax(s)[np.arange(6), t.argmax(-1)]))
    np.testing.assert_allclose(distill_loss(s, t, T, hard=True), hard, rtol=1e-5)
    assert float(distill_loss(t, t, T, hard=False)) == pytest.approx(0.0, abs=1e-6)

    # The teacher sees the student's batch in its own statistics and size: the same logits as
    # the teacher model run on the images normalised its way and resized.
    tmodel = edgejax.create_model("mobilenetv3_small_075", num_classes=3, rngs=1)
    c = validate(
        tiny_config(
            MODEL,
            **{
                "distill.teacher": "mobilenetv3_small_075",
                "distill.pretrained": "unused",
                "distill.image_size": 48,
                "distill.mean": (0.5, 0.5, 0.5),
                "distill.std": (0.25, 0.25, 0.25),
            },
        )
    )
    from edgejax.distill import Teacher, TeacherDef
    from edgejax.train.state import split_model
    from edgejax.data import augment

    mdef, *weights = split_model(tmodel)
    tmodel.eval()
    tdef = TeacherDef("mobilenetv3_small_075", mdef, 48, (0.5,) * 3, (0.25,) * 3, False)
    images = jnp.asarray(_fixed_batch(4, 32)["image"])
    mean, std = edgejax.model_info(MODEL)["mean"], edgejax.model_info(MODEL)["std"]
    got = jax.jit(lambda w, x: teacher_logits(tdef, w, x, mean, std))(
        tuple(weights), augment.normalize(images, mean, std)
    )
    xt = augment.normalize(images, (0.5,) * 3, (0.25,) * 3)
    xt = jax.image.resize(xt, (4, 48, 48, 3), "bilinear", antialias=True)
    np.testing.assert_allclose(got, _jit_call(tmodel, xt), rtol=1e-4, atol=1e-5)
    assert isinstance(Teacher(tdef, tuple(weights)).describe(), str)
    # a bfloat16 run computes the teacher in bfloat16 (its weights stay float32)
    _save_timm(tmodel, tmp_path / "t.safetensors")
    t16 = load_teacher(
        validate(
            tiny_config(
                MODEL,
                dtype="bfloat16",
                **{
                    "distill.teacher": "mobilenetv3_small_075",
                    "distill.image_size": 48,
                    "distill.pretrained": str(tmp_path / "t.safetensors"),
                    "distill.mean": (0.5,) * 3,
                    "distill.std": (0.25,) * 3,
                },
            )
        ),
        num_classes=3,
        dtype=jnp.bfloat16,
    )
    x16 = augment.normalize(images, mean, std, jnp.bfloat16)
    got16 = jax.jit(lambda w, x: teacher_logits(t16.definition, w, x, mean, std))(t16.weights, x16)
    from flax import nnx
    from edgejax.train.state import merge

    built = merge(t16.definition.mdef, *t16.weights, train=False)
    dtypes = {
        getattr(m, "dtype", None) for _, m in nnx.iter_graph(built) if type(m).__name__ == "Conv2d"
    }
    assert dtypes == {jnp.bfloat16}
    assert got16.dtype == jnp.float32 and not np.array_equal(got16, got)
    np.testing.assert_allclose(got16, got, rtol=0.1, atol=0.1)
    with pytest.raises(ConfigError, match="pretrained file unused does not exist"):
        load_teacher(c, num_classes=3)


def test_distill_step_loss_is_the_mixed_loss(tmp_path):
    """alpha = 1: the step's loss is T^2 KL(teacher || student) on the batch; alpha = 0: the
    step is the undistilled step, bit for bit."""
    from edgejax.train.step import cross_entropy

    teacher = edgejax.create_model("mobilenetv3_small_075", num_classes=10, rngs=3)
    _save_timm(teacher, tmp_path / "t.safetensors")
    kw = {
        "distill.teacher": "mobilenetv3_small_075",
        "distill.pretrained": str(tmp_path / "t.safetensors"),
        "distill.image_size": 64,
    }
    batch = _fixed_batch(16, 32)
    plain = build(tiny_config(MODEL), num_classes=10)
    ref_state, ref_m = plain.train_step(plain.state, plain.put_batch(batch))

    zero = build(tiny_config(MODEL, **kw, **{"distill.alpha": 0.0}), num_classes=10)
    state, m = zero.step(zero.state, zero.put_batch(batch))
    _assert_same(state.params, ref_state.params, "alpha 0: ")
    assert float(m["loss"]) == float(ref_m["loss"]) and float(m["distill_loss"]) > 0

    one = build(
        tiny_config(MODEL, **kw, **{"distill.alpha": 1.0, "distill.temperature": 3.0}),
        num_classes=10,
    )
    from edgejax.data import augment
    from edgejax.distill import distill_loss
    from edgejax.train.state import merge

    st = one.state
    model = merge(one.model_def, st.params, st.batch_stats, st.model_state, train=True)
    x = augment.normalize(jnp.asarray(batch["image"]), one.mean, one.std)
    tinfo = edgejax.model_info("mobilenetv3_small_075")
    teacher.eval()
    xt = augment.normalize(jnp.asarray(batch["image"]), tinfo["mean"], tinfo["std"])
    xt = jax.image.resize(xt, (16, 64, 64, 3), "bilinear", antialias=True)  # distill.image_size
    s_logits, t_logits = _jit_call(model, x), _jit_call(teacher, xt)
    want = float(distill_loss(s_logits, t_logits, 3.0, hard=False))
    _, m = one.step(one.state, one.put_batch(batch))
    assert float(m["loss"]) == pytest.approx(want, rel=1e-4)
    assert float(m["distill_loss"]) == pytest.approx(want, rel=1e-4)
    assert float(cross_entropy(s_logits, jax.nn.one_hot(batch["label"], 10))) != pytest.approx(want)


@pytest.mark.slow
def test_distilled_group_from_a_run_equals_solo(folder, tmp_path):
    """A teacher trained by edgejax.train (its run's size and statistics), two students of one
    group at other temperatures / weights: each equals its solo run bit for bit."""
    teacher_run = tmp_path / "teacher"
    run(
        _config(
            folder, num_steps=2, **{"model.name": "mobilenetv3_small_075", "data.image_size": 40}
        ),
        teacher_run,
    )
    kw = {
        "distill.teacher": "mobilenetv3_small_075",
        "distill.checkpoint": str(teacher_run),
        "num_steps": 3,
        "eval.every_steps": 3,
    }
    trials = [
        _config(folder, **kw, **{"distill.temperature": 1.0, "distill.alpha": 0.5, "seed": 0}),
        _config(folder, **kw, **{"distill.temperature": 4.0, "distill.alpha": 0.9, "seed": 1}),
    ]
    group = run_group(
        trials, [tmp_path / "s0", tmp_path / "s1"], group_dir=tmp_path / "g", mode="sequential"
    )
    assert [s["status"] for s in group] == ["completed", "completed"]
    assert group[1]["teacher"]["model"] == "mobilenetv3_small_075"
    solo = run(trials[1], tmp_path / "solo")
    assert solo["last_eval"] == group[1]["last_eval"]
    _assert_same(
        _group_trial(tmp_path / "g", 1),
        load_weights(tmp_path / "solo" / "checkpoints"),
        "trial 1: ",
    )
    rows = [json.loads(x) for x in open(tmp_path / "solo" / "metrics.jsonl")]
    assert all("distill_loss" in r for r in rows if r["kind"] == "train")


def test_bad_teachers_are_named_before_compiling(folder, tmp_path):
    """A run of another model, a head of another class count, a teacher without weights."""
    teacher_run = tmp_path / "teacher"
    teacher_run.mkdir()
    (teacher_run / "config.json").write_text(
        json.dumps({"model": {"name": "mobilenetv3_small_075"}})
    )
    kw = {"distill.teacher": "mobilenetv3_small_100", "distill.checkpoint": str(teacher_run)}
    wrong_model = _config(folder, **kw)
    with pytest.raises(ConfigError, match="is a run of 'mobilenetv3_small_075', not of teacher"):
        run(wrong_model, tmp_path / "x")
    ten = edgejax.create_model("mobilenetv3_small_075", num_classes=10, rngs=0)
    _save_timm(ten, tmp_path / "ten.safetensors")
    wrong_head = _config(
        folder,
        num_steps=1,
        **{
            "distill.teacher": "mobilenetv3_small_075",
            "distill.pretrained": str(tmp_path / "ten.safetensors"),
        },
    )
    with pytest.raises(ConfigError, match="10-class head, the student 3 classes"):
        run(wrong_head, tmp_path / "y")
    with pytest.raises(ConfigError, match="needs its weights"):
        validate(tiny_config(MODEL, **{"distill.teacher": "mobilenetv3_small_075"}))


def test_distill_cache_replays_the_teachers_inputs_and_resumes(folder, tmp_path):
    """The cache holds, per sample, the teacher's top-K of the very input the student is fed
    (RandAugment and Mixup on): training from it sees each input bit for bit (the step's digest
    check), an interrupted cache is finished identically, a cache of another run is refused."""
    from edgejax.data import build_source
    from edgejax.distill import load_teacher, teacher_logits
    from edgejax.distill.cache import DistillCache, sparse_probs, write_cache
    from edgejax.train.hparams import Features
    from edgejax.train.loop import train_batches
    from edgejax.train.state import augment_rng
    from edgejax.train.step import augment_batch, batch_key, input_digest

    _save_timm(
        edgejax.create_model("mobilenetv3_small_075", num_classes=3, rngs=5), tmp_path / "t.st"
    )
    kw = {
        "num_epochs": 2.0,
        "distill.teacher": "mobilenetv3_small_075",
        "distill.pretrained": str(tmp_path / "t.st"),
        "distill.image_size": 32,
        "distill.temperature": 2.0,
        "augment.rand_augment": True,
        "augment.mixup_alpha": 0.5,
    }
    c = validate(_config(folder, **kw))
    out = tmp_path / "cache"
    meta = write_cache(c, str(out), top_k=2, progress=False)
    assert meta["epochs"] == [[0, 0, 3], [1, 3, 6]] and meta["samples"] == 72

    # step 4's records: the teacher's top-2 of the input the train step builds at step 4
    src, info = build_source(folder, "train")
    from edgejax.train.progressive import make_plan

    plan = make_plan(c, len(src), 32)
    cache = DistillCache(str(out), c, plan, info["class_names"])
    got = cache.batch(4)
    interp = edgejax.model_info(MODEL)["interpolation"]
    batch = next(iter(train_batches(c, plan, src, 4, interpolation=interp)))
    mean, std = edgejax.model_info(MODEL)["mean"], edgejax.model_info(MODEL)["std"]
    r = build(c, num_classes=3)
    x, _ = augment_batch(
        r.config,
        Features.of([c]),
        r.hparams(c),
        3,
        mean,
        std,
        batch_key(augment_rng(0), 4),
        jnp.asarray(batch["image"]),
        jnp.asarray(batch["label"]),
    )
    teacher = load_teacher(c, num_classes=3)
    t = jax.jit(lambda w, x: teacher_logits(teacher.definition, w, x, mean, std))(
        teacher.weights, x
    )
    t = np.asarray(t)
    np.testing.assert_array_equal(got["kd_digest"], np.asarray(input_digest(x)))
    np.testing.assert_array_equal(got["kd_indices"], np.argsort(-t, axis=1)[:, :2])
    np.testing.assert_allclose(got["kd_values"], -np.sort(-t, axis=1)[:, :2], rtol=1e-3)
    p = np.asarray(sparse_probs({k: jnp.asarray(v) for k, v in got.items()}, 2.0, 3))
    want = np.exp(t / 2) / np.exp(t / 2).sum(1, keepdims=True)
    np.testing.assert_allclose(p, want, rtol=2e-3, atol=1e-4)  # K = 2 of 3: the rest is exact too

    # interrupted: epoch 1 lost, a torn temporary left; the command finishes it identically
    last = out / "epoch-00001.array_record"
    before = last.read_bytes()
    last.unlink()
    (out / "epoch-00001.array_record.tmp").write_bytes(b"torn")
    lines = []
    write_cache(c, str(out), top_k=2, progress=False, say=lines.append)
    assert "has 1 of 2 epochs" in lines[0] and last.read_bytes() == before

    summary = run(_config(folder, **kw, **{"distill.cache": str(out)}), tmp_path / "student")
    assert summary["status"] == "completed" and summary["cache_mismatch"] == 0
    assert summary["teacher"]["weights"] == f"cache {out}"

    with pytest.raises(ConfigError, match="written for another run.*seed 0 -> 3"):
        run(_config(folder, **kw, **{"distill.cache": str(out), "seed": 3}), tmp_path / "x")
    with pytest.raises(ConfigError, match="holds the cache of another run"):
        write_cache(validate(_config(folder, **{**kw, "seed": 3})), str(out), progress=False)
    with pytest.raises(ConfigError, match="train its run alone"):
        g = _config(folder, **kw, **{"distill.cache": str(out)})
        run_group([g, g], [tmp_path / "g0", tmp_path / "g1"])


def test_distill_cache_command_says_what_is_wrong(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.py"
    cfg.write_text(
        "from edgejax.train.config import base_config\n"
        "def get_config(arg=None):\n"
        "    return base_config()\n"
    )

    def cache(*args):
        return subprocess.run(
            [sys.executable, "-m", "edgejax.distill.cache", *args],
            capture_output=True,
            text=True,
        )

    p = cache(f"--config={cfg}")
    assert p.returncode == 2 and "--config and --out are required" in p.stderr
    p = cache(f"--config={cfg}", "--out", str(tmp_path / "o"), "--config.distill.tempreature=2")
    assert p.returncode == 2 and "Did you mean distill.temperature" in p.stderr
    p = cache(f"--config={cfg}", "--out", str(tmp_path / "o"))
    assert p.returncode == 1 and "distill.teacher is not set" in p.stderr


@pytest.mark.slow
def test_distilled_vmapped_group_shares_one_teacher(folder, tmp_path):
    """A vmapped group (the GPU / TPU default): the teacher's weights are one argument of the
    step, not stacked per trial, and each trial matches its solo run (float summation order of
    batched convolutions aside)."""
    _save_timm(edgejax.create_model("mobilenetv3_small_075", num_classes=3, rngs=2), tmp_path / "t")
    kw = {
        "distill.teacher": "mobilenetv3_small_075",
        "distill.pretrained": str(tmp_path / "t"),
        "distill.image_size": 48,
        "num_steps": 2,
        "eval.every_steps": 2,
    }
    trials = [
        _config(folder, **kw, **{"distill.temperature": 1.0, "seed": 0}),
        _config(folder, **kw, **{"distill.temperature": 3.0, "distill.alpha": 0.9, "seed": 1}),
    ]
    group = run_group(
        trials, [tmp_path / "v0", tmp_path / "v1"], group_dir=tmp_path / "g", mode="vmap"
    )
    solo = run(trials[1], tmp_path / "solo")
    a, b = _group_trial(tmp_path / "g", 1), load_weights(tmp_path / "solo" / "checkpoints")
    for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
    assert group[1]["last_eval"]["top1"] == solo["last_eval"]["top1"]
