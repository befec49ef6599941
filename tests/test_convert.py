"""timm conversion: strict errors, safetensors loading, pickles refused, Hub offline message."""

import numpy as np
import pytest
import jax

import edgejax
from edgejax.convert import StateDictMismatchError, from_timm, to_timm


@pytest.fixture(scope="module")
def repvgg():
    model = edgejax.create_model("repvgg_a0", rngs=3)
    return model, to_timm(model)


def test_round_trip_through_safetensors(tmp_path, repvgg):
    from safetensors.numpy import save_file

    model, sd = repvgg
    assert "stem.conv_kxk.conv.weight" in sd and sd["stem.conv_kxk.conv.weight"].shape == (
        48,
        3,
        3,
        3,
    )
    path = tmp_path / "repvgg_a0.safetensors"
    save_file(sd, str(path))
    loaded = edgejax.create_model("repvgg_a0", pretrained=str(path))
    x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))

    # another class count: backbone loaded, a fresh 7-class head
    ft = edgejax.create_model("repvgg_a0", pretrained=str(path), num_classes=7, rngs=1)
    assert ft.head.fc.kernel.shape == (1280, 7)
    np.testing.assert_array_equal(
        np.asarray(ft.stem.conv_kxk.conv.kernel[...]),
        np.asarray(model.stem.conv_kxk.conv.kernel[...]),
    )


def test_a_files_head_is_kept(tmp_path, repvgg, caplog):
    """No num_classes: the file's head, whatever its width; another width: one line says only
    the backbone was loaded."""
    from safetensors.numpy import save_file

    _, sd = repvgg
    rng = np.random.default_rng(0)
    sd = dict(
        sd,
        **{
            "head.fc.weight": rng.standard_normal((21, 1280)).astype(np.float32),
            "head.fc.bias": rng.standard_normal(21).astype(np.float32),
        },
    )
    path = tmp_path / "w21.safetensors"
    save_file(sd, str(path))
    with caplog.at_level("WARNING", logger="edgejax"):
        m = edgejax.create_model("repvgg_a0", pretrained=str(path))
    assert m.num_classes == 21 and not caplog.records
    np.testing.assert_array_equal(np.asarray(m.head.fc.kernel[...]), sd["head.fc.weight"].T)
    with caplog.at_level("WARNING", logger="edgejax"):
        edgejax.create_model("repvgg_a0", pretrained=str(path), num_classes=7)
    assert [r.getMessage() for r in caplog.records] == [
        "repvgg_a0: w21.safetensors has a 21-class head; loaded only its backbone, with a "
        "freshly initialised 7-class head"
    ]
    assert edgejax.create_model("repvgg_a0", num_classes=None).num_classes == 1000


def test_strict_lists_every_problem_in_one_error(repvgg):
    _, sd = repvgg
    sd = dict(sd)
    del sd["stem.conv_1x1.bn.running_var"]
    sd["stem.extra.weight"] = np.zeros(3, np.float32)
    sd["head.fc.bias"] = np.zeros(5, np.float32)
    with pytest.raises(StateDictMismatchError) as e:
        from_timm("repvgg_a0", sd, num_classes=1000)
    msg = str(e.value)
    assert "missing: stem.conv_1x1.bn.running_var" in msg
    assert "unexpected: stem.extra.weight" in msg
    assert "wrong shape: head.fc.bias" in msg


def test_state_dict_of_another_model_is_refused(repvgg):
    _, sd = repvgg
    with pytest.raises(StateDictMismatchError, match="missing"):
        from_timm("mobilenetv3_small_050", sd)


def test_num_classes_inferred_from_the_head(repvgg):
    _, sd = repvgg
    sd = dict(
        sd,
        **{
            "head.fc.weight": np.zeros((21, 1280), np.float32),
            "head.fc.bias": np.zeros(21, np.float32),
        },
    )
    assert from_timm("repvgg_a0", sd).num_classes == 21


def test_pickle_files_are_refused(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match="safetensors"):
        edgejax.create_model("repvgg_a0", pretrained=str(path))


def test_hub_offline_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import importlib
    import huggingface_hub.constants as c

    importlib.reload(c)
    with pytest.raises(RuntimeError, match=r"timm/repvgg_a0\.rvgg_in1k.*model\.safetensors"):
        edgejax.create_model("repvgg_a0", pretrained=True)


def test_untrusted_weights_files_are_refused_without_allocating(tmp_path, repvgg):
    """A header claiming a huge size or a huge tensor, a float weight stored as integers: each a
    clear error (safetensors checks the claimed sizes against the file before allocating)."""
    import json
    import struct
    from safetensors.numpy import save_file

    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(ValueError, match="header too large.*damaged or not safetensors"):
        edgejax.create_model("repvgg_a0", pretrained=str(huge))
    hdr = json.dumps(
        {"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 4]}}
    ).encode()
    big = tmp_path / "big.safetensors"
    big.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 4)
    with pytest.raises(ValueError, match="invalid shape.*damaged or not safetensors"):
        edgejax.create_model("repvgg_a0", pretrained=str(big))
    _, sd = repvgg
    ints = tmp_path / "ints.safetensors"
    save_file(
        dict(sd, **{"stem.conv_kxk.conv.weight": sd["stem.conv_kxk.conv.weight"].astype(np.int32)}),
        str(ints),
    )
    with pytest.raises(
        StateDictMismatchError,
        match="wrong dtype: stem.conv_kxk.conv.weight: int32, expected a float",
    ):
        edgejax.create_model("repvgg_a0", pretrained=str(ints))
