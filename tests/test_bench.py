"""edgejax.bench: input checks before compiling, MAC counts, records, table, command line."""

import json

import pytest
from flax import nnx

import edgejax
from edgejax import bench
from edgejax.deploy import fuse


def test_resolve_models():
    assert bench.resolve_models("paper") == list(bench.PAPER_MODELS)
    assert bench.resolve_models("repvgg_a2,paper")[0] == "repvgg_a2"
    assert len(bench.resolve_models("paper")) == 9
    assert "repvgg_a0" in bench.resolve_models("repvgg_a*")
    with pytest.raises(ValueError, match="repvgg_a2"):
        bench.resolve_models("repvgg_a3")
    with pytest.raises(ValueError, match="no registered model matches"):
        bench.resolve_models("nothing_*")


def _no_compile(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("compiled before rejecting bad input")

    monkeypatch.setattr(bench, "benchmark_model", boom)


def test_bad_input_fails_before_compiling(monkeypatch):
    _no_compile(monkeypatch)
    with pytest.raises(ValueError, match="Unknown model"):
        bench.benchmark("mobilenetv3_large_100,resnet50", [1])
    with pytest.raises(ValueError, match="batch sizes must be positive"):
        bench.benchmark("repvgg_a0", [1, 0])
    with pytest.raises(ValueError, match="repvgg_a0 does not support resolution 16"):
        bench.benchmark("repvgg_a0", [1], resolution=16)
    with pytest.raises(ValueError, match="dtype"):
        bench.benchmark("repvgg_a0", [1], dtype="int8")
    with pytest.raises(ValueError, match="train mode"):
        bench.benchmark("repvgg_a0", [1], mode="train", deploy=True)
    with pytest.raises(ValueError, match="reps must be an integer >= 0"):
        bench.benchmark("repvgg_a0", [1], reps=-1)


def test_cli_bad_input_exit_code(capsys, monkeypatch):
    _no_compile(monkeypatch)
    assert bench.main(["--models", "repvgg_a9", "--batch-sizes", "1"]) == 2
    assert "Unknown model 'repvgg_a9'" in capsys.readouterr().err
    assert bench.main(["--models", "repvgg_a0", "--batch-sizes", "0"]) == 2
    assert "batch sizes must be positive" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,train,deploy",
    [
        ("repvgg_a2", 5.69, 5.12),  # porting spec section 3 (conv + linear MACs)
        ("mobilenetv3_large_100", 0.217, 0.217),
        ("mobilevitv2_050", 0.36, 0.36),
    ],
)
def test_gmacs_match_spec(name, train, deploy):
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    for model, expected in (
        (nnx.eval_shape(lambda: edgejax.create_model(name)), train),
        (nnx.eval_shape(lambda: fuse(edgejax.create_model(name))), deploy),
    ):
        gmacs = bench.count_macs(model, x) / 1e9
        assert gmacs == pytest.approx(expected, rel=0.03)


def test_benchmark_records_and_cli(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(
        [
            "--models",
            "repvgg_a0",
            "--batch-sizes",
            "1,2",
            "--resolution",
            "32",
            "--reps",
            "3",
            "--warmup",
            "1",
            "--deploy",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    table = capsys.readouterr().out
    assert "p50 ms" in table and "repvgg_a0" in table
    data = json.loads(out.read_text())
    assert data["environment"]["backend"] == "cpu"
    recs = data["records"]
    assert [r["batch_size"] for r in recs] == [1, 2]
    for r in recs:
        assert r["deploy"] and r["params"] < r["params_train"]
        assert r["lat_ms_p50"] <= r["lat_ms_p90"] <= r["lat_ms_p99"]
        assert r["img_s"] > 0 and r["compile_s"] > 0 and r["reps"] >= 3
        assert r["gflops"] > 0 and r["gmacs"] > 0
        assert r["size_mb_fp32"] == pytest.approx(2 * r["size_mb_bf16"])
        assert r["mem_mb"] > 0


def test_benchmark_train_mode():
    (rec,) = bench.benchmark(
        "mobilenetv3_small_050", [2], resolution=32, mode="train", warmup=1, reps=2
    )
    assert rec["mode"] == "train" and rec["lat_ms_p50"] > 0
    # a train step costs roughly 3x the forward pass
    assert rec["gflops"] > 2 * 2 * rec["gmacs"]


def test_compile_only_runs_nothing(monkeypatch):
    """``reps=0`` (``--reps 0``) compiles and counts but never calls the program."""

    def never(*a, **k):
        raise AssertionError("a compile-only benchmark ran the program")

    monkeypatch.setattr(bench, "_time_calls", never)
    (rec,) = bench.benchmark("repvgg_a0", [2], resolution=32, reps=0)
    assert rec["compile_s"] > 0 and rec["gmacs"] > 0 and rec["params"] > 0
    assert "lat_ms_p50" not in rec and "img_s" not in rec
    assert "repvgg_a0" in bench.format_table([rec])
