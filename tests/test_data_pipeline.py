"""Grain pipelines: determinism, resume, process sharding, epochs, eval padding, bad records."""

import os

import numpy as np
import pytest

from edgejax.data import build_source, make_eval_loader, make_train_loader, steps_per_epoch
from edgejax.data import testing as X

SHARED = X.shared_data()


@pytest.fixture(scope="module")
def digits():
    return build_source("digits", "train")


def _train(source, **kw):
    args = dict(global_batch_size=32, image_size=24, seed=3, process_index=0, process_count=1)
    args.update(kw)
    return make_train_loader(source, **args)


def _take(loader, n):
    out = []
    for b in loader:
        out.append(b)
        if len(out) == n:
            break
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_batches_have_the_promised_types(digits):
    src, info = digits
    b = _take(_train(src), 1)[0]
    assert set(b) == {"image", "label"}
    assert b["image"].shape == (32, 24, 24, 3) and b["image"].dtype == np.uint8
    assert b["label"].shape == (32,) and b["label"].dtype == np.int32
    assert steps_per_epoch(info["num_records"], 32) == info["num_records"] // 32


def test_same_seed_same_batches_whatever_the_threads(digits):
    src, _ = digits
    a = _take(_train(src, threads=1), 6)
    b = _take(_train(src, threads=4, prefetch=8), 6)
    _same(a, b)
    c = _take(_train(src, seed=4), 1)
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    d = _take(_train(src, seed=-4), 1)  # any int seed, negative ones too
    assert not np.array_equal(d[0]["image"], c[0]["image"])


def test_multiprocessing_workers_give_the_same_batches_even_when_one_is_killed(digits, caplog):
    import multiprocessing
    import signal

    src, _ = digits
    n = 30  # the workers hold up to 2 x 4 batches made ahead: the kill must show before the end
    a = _take(_train(src, threads=2), n)
    loader = _train(src, workers=2, threads=1)  # grain mp_prefetch, spawned processes
    b = []
    for batch in loader:
        b.append(batch)
        if len(b) == 2:  # SIGKILL a worker mid-stream: the workers restart where it stopped
            workers = [p for p in multiprocessing.active_children() if "grain" in p.name]
            assert workers
            os.kill(workers[0].pid, signal.SIGKILL)
        if len(b) == n:
            break
    _same(a, b)
    assert loader.stats["worker_restarts"] == 1
    assert "a worker process died (killed by SIGKILL" in caplog.text


class DyingSource:
    """Record ``fatal`` ends the process that reads it, when that is a worker."""

    class_names = ["x"]

    def __init__(self, n, fatal, parent):
        self.n, self.fatal, self.parent = n, fatal, parent

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fatal and os.getpid() != self.parent:
            os._exit(3)
        return np.full((4, 4, 3), i % 256, np.uint8), int(i)


def test_workers_that_keep_dying_stop_with_a_clear_error():
    from edgejax.data import DataWorkerError

    loader = make_eval_loader(
        DyingSource(40, fatal=21, parent=os.getpid()),
        global_batch_size=4,
        image_size=4,
        crop_pct=1.0,
        process_index=0,
        process_count=1,
        workers=1,
        threads=1,
    )
    loader.max_worker_restarts = 1
    with pytest.raises(
        DataWorkerError,
        match=r"eval data: worker processes died 2 times "
        r"\(exit code 3\), the last at batch \d+ of this pass",
    ):
        list(loader)


def test_resume_at_any_step_is_exact(digits):
    src, info = digits
    spe = steps_per_epoch(info["num_records"], 32)
    full = _take(_train(src), spe + 5)  # crosses an epoch boundary
    for k in (1, spe - 1, spe + 2):
        resumed = _take(_train(src, start_step=k, threads=3), len(full) - k)
        _same(full[k:], resumed)


def test_each_epoch_is_a_new_permutation_without_repeats(digits):
    src, info = digits
    n, bs = info["num_records"], 32
    spe = steps_per_epoch(n, bs)
    # identify records by their (unaugmented) index: use a source of indices as images
    ids = IndexSource(n)
    loader = make_train_loader(
        ids,
        global_batch_size=bs,
        image_size=4,
        seed=0,
        num_epochs=2,
        process_index=0,
        process_count=1,
        scale=(1, 1),
        ratio=(1, 1),
        hflip=0.0,
    )
    batches = list(loader)
    assert len(batches) == 2 * spe  # remainder of each epoch dropped, num_epochs honoured
    seen = [np.concatenate([b["label"] for b in batches[e * spe : (e + 1) * spe]]) for e in (0, 1)]
    for s in seen:
        assert len(set(s.tolist())) == spe * bs  # no record twice within an epoch
    assert not np.array_equal(seen[0], seen[1])  # reshuffled each epoch


class IndexSource:
    """Record i is a constant image and label i: lets tests identify which records were read."""

    class_names = ["x"]

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((4, 4, 3), i % 256, np.uint8), int(i)


def test_process_shards_union_to_the_global_batch():
    src = IndexSource(100)
    kw = dict(
        global_batch_size=16,
        image_size=4,
        seed=1,
        num_epochs=1,
        scale=(1, 1),
        ratio=(1, 1),
        hflip=0.0,
    )
    whole = list(make_train_loader(src, process_index=0, process_count=1, **kw))
    parts = [list(make_train_loader(src, process_index=p, process_count=4, **kw)) for p in range(4)]
    assert all(len(p) == len(whole) == 6 for p in parts)
    for step, batch in enumerate(whole):
        local = [parts[p][step]["label"] for p in range(4)]
        assert all(len(x) == 4 for x in local)
        np.testing.assert_array_equal(np.concatenate(local), batch["label"])  # row for row
    with pytest.raises(ValueError, match="divisible"):
        make_train_loader(src, process_index=0, process_count=3, **kw)


def test_augmentation_does_not_depend_on_the_process_count(digits):
    # process p of P holds global rows [p * G / P, (p + 1) * G / P): the rows it contributes to the
    # global array (make_array_from_process_local_data), with the same records, crops and flips
    src, _ = digits
    whole = _take(_train(src), 3)
    for pc in (2, 4):
        parts = [_take(_train(src, process_index=p, process_count=pc), 3) for p in range(pc)]
        for step in range(3):
            for p in range(pc):
                rows = slice(p * 32 // pc, (p + 1) * 32 // pc)
                np.testing.assert_array_equal(parts[p][step]["image"], whole[step]["image"][rows])
                np.testing.assert_array_equal(parts[p][step]["label"], whole[step]["label"][rows])


def test_eval_sees_every_record_once_with_padding_mask():
    n = 45
    src = IndexSource(n)
    for pc in (1, 2):
        labels = []
        for p in range(pc):
            loader = make_eval_loader(
                src,
                global_batch_size=20,
                image_size=4,
                crop_pct=1.0,
                interpolation="bilinear",
                process_index=p,
                process_count=pc,
            )
            batches = list(loader)
            assert len(batches) == 3
            assert all(b["image"].shape == (20 // pc, 4, 4, 3) for b in batches)
            for b in batches:
                labels += b["label"][b["mask"]].tolist()
            assert loader.stats["skipped"] == 0
        assert sorted(labels) == list(range(n))


def test_empty_source_fails_before_any_worker():
    with pytest.raises(ValueError, match="empty"):
        make_train_loader(
            IndexSource(0),
            global_batch_size=4,
            image_size=8,
            seed=0,
            process_index=0,
            process_count=1,
            workers=2,
        )
    with pytest.raises(ValueError, match="smaller than one global batch"):
        make_train_loader(
            IndexSource(3),
            global_batch_size=4,
            image_size=8,
            seed=0,
            process_index=0,
            process_count=1,
        )


def test_corrupt_files_are_skipped_counted_and_never_crash(tmp_path):
    bad = X.write_bad_tree(tmp_path, per_class=3, large_side=3000)
    src, info = build_source(str(tmp_path), "train")
    n_bad = sum(not ok for _, _, ok in bad.values())
    assert info["num_records"] == 6 + len(bad)
    loader = make_train_loader(
        src,
        global_batch_size=4,
        image_size=16,
        seed=0,
        num_epochs=3,
        process_index=0,
        process_count=1,
        threads=2,
    )
    batches = list(loader)
    assert len(batches) == 3 * (info["num_records"] // 4)
    assert all(b["image"].shape == (4, 16, 16, 3) for b in batches)
    # 16 records, batches of 4: every epoch reads every record, so each bad file 3 times (and a
    # replacement drawn at random may be bad too)
    assert info["num_records"] == 16
    assert loader.stats["skipped"] >= 3 * n_bad
    ev = make_eval_loader(
        src,
        global_batch_size=4,
        image_size=16,
        crop_pct=0.875,
        interpolation="bilinear",
        process_index=0,
        process_count=1,
    )
    masks = np.concatenate([b["mask"] for b in ev])
    assert ev.stats["skipped"] == n_bad
    assert masks.sum() == info["num_records"] - n_bad
    assert ev.stats["records"] == info["num_records"] - n_bad


@pytest.mark.skipif(SHARED is None, reason="../shared/data (real images) is absent")
def test_real_cifar_folder_through_the_pipeline():
    src, info = build_source(str(SHARED / "cifar10"), "val")
    assert info["num_classes"] == 10 and info["num_records"] == 10_000
    assert info["class_names"][0] == "airplane"
    b = _take(
        make_train_loader(
            src, global_batch_size=64, image_size=32, seed=0, process_index=0, process_count=1
        ),
        2,
    )
    assert b[1]["image"].shape == (64, 32, 32, 3) and b[1]["image"].std() > 20


def test_batches_can_arrive_as_sharded_global_arrays(digits):
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    src, _ = digits
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    plain = _take(_train(src), 1)[0]
    placed = _take(_train(src, sharding=sharding), 1)[0]
    assert isinstance(placed["image"], jax.Array) and placed["image"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(placed["image"]), plain["image"])
