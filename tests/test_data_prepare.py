"""`python -m edgejax.data.prepare`: ArrayRecord shards, metadata, skipped files, resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from edgejax.data import build_source, make_eval_loader
from edgejax.data import prepare as P
from edgejax.data import sources as S
from edgejax.data import testing as X
from edgejax.data import transforms as T

REPO = Path(__file__).resolve().parents[1]
SHARED = X.shared_data()


def test_prepare_skips_bad_files_and_roundtrips(tmp_path):
    src = tmp_path / "src"
    bad = X.write_bad_tree(src / "train", per_class=3, large_side=10_000)
    X.write_good_tree(src / "val", classes=("cat", "dog"), per_class=2)
    meta = P.prepare(
        str(src),
        str(tmp_path / "out"),
        short_side=32,
        quality=90,
        shards=2,
        workers=0,
        progress=False,
    )
    n_bad = sum(not ok for _, _, ok in bad.values())
    train = meta["splits"]["train"]
    assert train["skipped"] == n_bad and len(meta["skipped_files"]) == n_bad
    assert train["num_records"] == 6 + len(bad) - n_bad
    assert meta["splits"]["val"]["num_records"] == 4
    assert meta["class_names"] == ["cat", "dog"] and train["per_class"] == [3, 3 + len(bad) - n_bad]
    reasons = {Path(e["file"]).name: e["reason"] for e in meta["skipped_files"]}
    assert set(reasons) == {name for _, name, ok in bad.values() if not ok}
    assert "skipped files: %d" % n_bad in P.summary(meta)

    on_disk = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert on_disk["array_record_options"] == "group_size:1,uncompressed"
    assert len(on_disk["splits"]["train"]["files"]) == 2
    source, info = build_source(str(tmp_path / "out"), "train")
    assert info["kind"] == "array_record" and info["num_records"] == train["num_records"]
    for i in range(len(source)):
        data, label = source[i]
        img = T.decode_image(data)
        assert min(img.shape[:2]) <= 32 and img.shape[2] == 3  # short side shrunk, RGB
        assert T.is_jpeg(data) and label in (0, 1)
    # the 10,000 px wide image is stored at short side 32 (64 -> 32: 5,000 wide)
    widths = sorted(T.decode_image(source[i][0]).shape[1] for i in range(len(source)))
    assert widths[-1] == 5000
    # the shards feed the loaders; corrupt inputs never reach them
    ev = make_eval_loader(
        source,
        global_batch_size=4,
        image_size=16,
        crop_pct=1.0,
        interpolation="bilinear",
        process_index=0,
        process_count=1,
    )
    assert sum(int(b["mask"].sum()) for b in ev) == len(source) and ev.stats["skipped"] == 0


def test_prepare_refuses_to_overwrite_and_resumes(tmp_path):
    src = tmp_path / "src"
    X.write_good_tree(src, classes=("a", "b"), per_class=5)
    out = tmp_path / "out"
    meta = P.prepare(str(src), str(out), short_side=24, shards=3, workers=0, progress=False)
    assert meta["splits"]["all"]["num_records"] == 10
    with pytest.raises(P.PrepareError, match="--overwrite"):
        P.prepare(str(src), str(out), short_side=24, shards=3, workers=0, progress=False)
    first = (out / "all-00000-of-00003.array_record").read_bytes()

    # simulate an interrupted run: shard 0 done, shard 1 half-written, no metadata
    (out / "metadata.json").unlink()
    (out / "all-00002-of-00003.array_record").unlink()
    (out / "all-00001-of-00003.array_record").rename(out / "all-00001-of-00003.array_record.tmp")
    (out / P.STATE_FILE).write_text(
        json.dumps(
            {"short_side": 24, "quality": 90, "subsampling": "420", "shards": 3, "source": str(src)}
        )
    )
    (out / "all-00000-of-00003.array_record.json").write_text(
        json.dumps({"num_records": 3, "per_class": [3, 0], "skipped": []})
    )
    marker = out / "all-00000-of-00003.array_record"
    marker.write_bytes(first)
    mtime = marker.stat().st_mtime_ns
    with pytest.raises(P.PrepareError, match="other settings"):
        P.prepare(str(src), str(out), short_side=32, shards=3, workers=0, progress=False)
    meta2 = P.prepare(str(src), str(out), short_side=24, shards=3, workers=0, progress=False)
    assert marker.stat().st_mtime_ns == mtime  # the finished shard was kept, not rewritten
    assert meta2["splits"]["all"]["num_records"] == 10
    assert not list(out.glob("*.tmp")) and not (out / P.STATE_FILE).exists()
    src_ds, _ = build_source(str(out), "val")  # flat tree: split "all" serves every split
    assert len(src_ds) == 10
    # with --overwrite it starts again
    meta3 = P.prepare(
        str(src), str(out), short_side=24, shards=1, workers=0, overwrite=True, progress=False
    )
    assert meta3["splits"]["all"]["files"] == ["all-00000-of-00001.array_record"]
    assert not (out / "all-00001-of-00003.array_record").exists()


def test_cli_parallel_with_progress_and_errors(tmp_path, capsys):
    src = tmp_path / "src"
    X.write_good_tree(src, classes=("a", "b", "c"), per_class=4, size=(300, 400))
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    cmd = [
        sys.executable,
        "-m",
        "edgejax.data.prepare",
        str(src),
        str(out),
        "--short-side",
        "64",
        "--quality",
        "85",
        "--shards",
        "2",
        "--workers",
        "2",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "all: 12 records in 2 shards, 0 skipped" in r.stdout
    assert "img" in r.stderr  # tqdm progress bar
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["settings"]["short_side"] == 64 and meta["settings"]["quality"] == 85
    source, _ = build_source(str(out), "train")
    shapes = {T.decode_image(source[i][0]).shape for i in range(len(source))}
    assert shapes == {(64, 85, 3)}  # 300x400 -> short side 64
    # re-encoded with 4:2:0 chroma subsampling by default (1.3x faster to decode than 4:4:4)
    assert {simplejpeg.decode_jpeg_header(source[i][0])[3] for i in range(len(source))} == {"420"}
    assert meta["settings"]["subsampling"] == "420"
    assert P.main(cmd[3:]) == 2  # same command again, in-process: refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert P.main([str(tmp_path / "missing"), str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_record_format_roundtrip():
    rec = S.encode_record(b"\xff\xd8\xffjpegdata", 999)
    assert S.decode_record(rec) == (b"\xff\xd8\xffjpegdata", 999)


@pytest.mark.skipif(SHARED is None, reason="../shared/data (real images) is absent")
def test_prepare_real_imagenet_samples_short_side_256(tmp_path):
    src = tmp_path / "src"
    files = sorted((SHARED / "imagenet-samples").glob("*/*.JPEG"))[:6]
    for f in files:  # symlinks, never copies of the images
        (src / f.parent.name).mkdir(parents=True, exist_ok=True)
        (src / f.parent.name / f.name).symlink_to(f)
    meta = P.prepare(str(src), str(tmp_path / "out"), workers=0, progress=False)
    assert meta["splits"]["all"]["num_records"] == 6
    source, info = build_source(str(tmp_path / "out"), "train")
    assert info["class_names"] == sorted(f.parent.name for f in files)
    for i in range(6):
        data, label = source[i]
        orig = T.decode_image(files[i].read_bytes())
        img = T.decode_image(data)
        assert min(img.shape[:2]) == min(256, min(orig.shape[:2]))
        assert len(data) < len(files[i].read_bytes())
        assert label == i
        small = T.center_crop_resize(orig, 64, 1.0)
        again = T.center_crop_resize(img, 64, 1.0)
        assert np.abs(small.astype(int) - again.astype(int)).mean() < 6  # same picture


def test_subsampling_option_and_bad_settings(tmp_path):
    src = tmp_path / "src"
    X.write_good_tree(src, classes=("a",), per_class=2, size=(80, 120))
    P.prepare(
        str(src),
        str(tmp_path / "o444"),
        short_side=40,
        subsampling="444",
        workers=0,
        progress=False,
    )
    source, _ = build_source(str(tmp_path / "o444"), "train")
    assert simplejpeg.decode_jpeg_header(source[0][0])[3] == "444"
    with pytest.raises(P.PrepareError, match="subsampling must be one of"):
        P.prepare(str(src), str(tmp_path / "bad"), subsampling="411", progress=False)
    with pytest.raises(P.PrepareError, match=r"quality must be in \[1, 100\]"):
        P.prepare(str(src), str(tmp_path / "bad"), quality=0, progress=False)
    assert not (tmp_path / "bad").exists()  # refused before writing anything


def test_damaged_shards_are_named_by_the_loader_and_by_check(tmp_path, caplog):
    """A shard cut short (a copy that stopped, a full disk) and one damaged inside: opening the
    split names the cut one; a damaged record is skipped like a corrupt image, its shard named
    once; ``prepare --check`` reads every record and names both."""
    X.write_good_tree(tmp_path / "src", classes=("a", "b"), per_class=20)
    out = tmp_path / "out"
    meta = P.prepare(
        str(tmp_path / "src"), str(out), short_side=32, shards=3, workers=0, progress=False
    )
    assert meta["splits"]["all"]["file_records"] == [13, 13, 14]
    assert P.check(str(out)) == (
        f"{out}: 1 split(s), 3 shard(s), 40 records: every record reads",
        [],
    )
    first, second, third = (out / f for f in meta["splits"]["all"]["files"])
    data = bytearray(second.read_bytes())
    data[3000:3200] = bytes(b ^ 0xFF for b in data[3000:3200])  # inside a record's chunk
    second.write_bytes(bytes(data))
    source, _ = build_source(str(out), "val")
    with caplog.at_level("WARNING", logger="edgejax.data.sources"):
        read = [source[i] for i in range(len(source))]
    bad = [i for i, (img, _) in enumerate(read) if img == b""]
    assert bad and all(13 <= i < 26 for i in bad)  # in the second shard only
    (msg,) = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert msg.startswith(f"{second}: record {bad[0]} of split 'all' is unreadable (")
    ev = make_eval_loader(
        source, global_batch_size=8, image_size=16, crop_pct=1.0, process_index=0, process_count=1
    )
    assert sum(int(b["mask"].sum()) for b in ev) == 40 - len(bad)
    assert ev.stats["skipped"] == len(bad)

    third.write_bytes(third.read_bytes()[: third.stat().st_size // 2])
    with pytest.raises(
        S.DatasetError,
        match=rf"{out}: split 'all' has 1 damaged shard\(s\): "
        rf"{third.name} does not open \(.*truncated",
    ):
        build_source(str(out), "train")
    line, problems = P.check(str(out))
    assert line.endswith("40 records: 2 damaged shard(s)")
    assert [Path(f).name for f, _ in problems] == [second.name, third.name]
    assert problems[0][1].startswith(f"record {bad[0] - 13} of 13 does not read (")
    r = subprocess.run(
        [sys.executable, "-m", "edgejax.data.prepare", "--check", str(out)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert r.returncode == 1 and f"  {third.name}: does not open (" in r.stdout


def test_every_split_takes_the_train_splits_class_indices(tmp_path, caplog):
    X.write_good_tree(tmp_path / "src" / "train", classes=("airplane", "bird", "cat"), per_class=2)
    X.write_good_tree(tmp_path / "src" / "val", classes=("airplane", "cat"), per_class=2)
    with caplog.at_level("WARNING", logger="edgejax.data.sources"):
        meta = P.prepare(
            str(tmp_path / "src"), str(tmp_path / "out"), short_side=32, workers=0, progress=False
        )
    assert meta["class_names"] == ["airplane", "bird", "cat"]
    assert meta["splits"]["val"]["per_class"] == [2, 0, 2]  # val cats keep label 2
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "has no images of 1 of the 3 classes" in msg and "bird" in msg
    val, _ = build_source(str(tmp_path / "out"), "val")
    assert sorted(val[i][1] for i in range(len(val))) == [0, 0, 2, 2]
    X.write_good_tree(tmp_path / "src" / "val", classes=("dog",), per_class=1)
    with pytest.raises(S.DatasetError, match="class folder.s. dog are not among the 3 classes"):
        P.prepare(str(tmp_path / "src"), str(tmp_path / "out2"), workers=0, progress=False)
