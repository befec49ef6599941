"""Grain input pipelines for training and evaluation.

Train: a `MapDataset` of global steps -> [start_step:] -> map(one process's share of the global
batch: record indices from a seeded global shuffle per epoch, then read, decode, RandomResizedCrop
and flip straight into the batch array) -> threaded / multiprocessing prefetch -> numpy batches
(optionally device_put with the mesh's batch sharding). Global batch k is stream positions
[k*G, (k+1)*G); process p of P takes the contiguous block k*G + p*B .. k*G + (p+1)*B - 1 (B = G/P),
which is where `jax.make_array_from_process_local_data` puts its rows in the global batch. So the
global batch is the same array, row for row, whatever the process count: per-row randomness in the
step (dropout masks, RandAugment keys, Mixup's pairing with the flipped batch) does not depend on
the layout. The random draws of a whole global batch come from one generator keyed on (seed, k),
so a record's crop and flip depend on neither the process count nor the worker count.

The dataset is a `MapDataset` indexed by step, so resuming at step k is `steps[k:]`: the same
batches whatever the worker count, thread count or number of restarts (stateless resume). Working a
batch at a time (not a Grain element per record) avoids ~200 us of per-record overhead (Grain's
per-element machinery, per-record generators, np.stack of the batch).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections import OrderedDict
from typing import Iterator, Sequence

import grain
import numpy as np

from edgejax.data import transforms as T

log = logging.getLogger(__name__)

_MAX_SUBSTITUTES = 10


def steps_per_epoch(num_records: int, global_batch_size: int) -> int:
    """Train steps per epoch: full global batches only (the remainder of each epoch is dropped)."""
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    steps = num_records // global_batch_size
    if steps == 0:
        raise ValueError(
            f"dataset of {num_records} records is smaller than one global batch of "
            f"{global_batch_size}"
        )
    return steps


def _process_layout(global_batch_size: int, process_index, process_count) -> tuple[int, int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by the process count "
            f"{process_count}"
        )
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count, global_batch_size // process_count


class _EpochShuffledIndices:
    """Index source: position j of the stream -> record index perm_epoch(j)[j % per_epoch].

    Each epoch uses the first `per_epoch` entries (steps_per_epoch * global batch) of its own
    permutation, seeded by (seed, epoch), so every epoch is a fresh global shuffle and no batch
    straddles two epochs.
    """

    def __init__(self, num_records: int, per_epoch: int, seed: int, num_epochs: int | None):
        self.num_records, self.per_epoch, self.seed = num_records, per_epoch, seed
        self.length = per_epoch * num_epochs if num_epochs is not None else sys.maxsize
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.length

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._cache.get(epoch)
        if perm is None:
            rng = np.random.default_rng([self.seed % (1 << 64), epoch])
            perm = rng.permutation(self.num_records)
            self._cache[epoch] = perm
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return perm

    def __getitem__(self, j: int) -> int:
        epoch, i = divmod(int(j), self.per_epoch)
        return int(self._perm(epoch)[i])

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = OrderedDict()


class _Steps:
    """Grain source of global step numbers 0..length-1."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> int:
        return int(k)


# Uniforms per stream position: the crop's, one for the flip, one per substitute of a bad record.
_U_CROP = T.CROP_UNIFORMS
_U_FLIP = _U_CROP
_U_SUB = _U_CROP + 1
_U_TOTAL = _U_SUB + _MAX_SUBSTITUTES


class TrainBatchTransform:
    """global step k -> this process's share {"image": uint8 [B, S, S, 3], "label": int32 [B],
    "skipped": int32 [B]}.

    A record that cannot be decoded is replaced by another record drawn from the same uniforms (so
    the result is still deterministic) and counted in "skipped"; training never stops on bad data.
    """

    def __init__(
        self,
        source,
        indices: _EpochShuffledIndices,
        *,
        global_batch: int,
        process_index: int,
        process_count: int,
        seed: int,
        image_size: int,
        scale,
        ratio,
        hflip: float,
        interpolation: str,
    ):
        T._check_interpolation(interpolation)
        self.source, self.indices = source, indices
        self.global_batch, self.p, self.pc = global_batch, process_index, process_count
        self.seed, self.image_size = seed, image_size
        self.scale, self.ratio, self.hflip, self.interpolation = scale, ratio, hflip, interpolation

    def rows(self) -> slice:
        local = self.global_batch // self.pc
        return slice(self.p * local, (self.p + 1) * local)

    def positions(self, k: int) -> np.ndarray:
        return k * self.global_batch + np.arange(self.global_batch)[self.rows()]

    def __call__(self, k: int) -> dict:
        size = self.image_size
        rng = np.random.default_rng([self.seed % (1 << 64), k])  # any int seed, even negative
        u = rng.random((self.global_batch, _U_TOTAL))
        u = u[self.rows()]
        records = [self.indices[j] for j in self.positions(k)]
        n = len(records)
        images = np.empty((n, size, size, 3), np.uint8)
        labels = np.empty((n,), np.int32)
        skipped = np.zeros((n,), np.int32)
        for i, index in enumerate(records):
            ui = u[i]
            for attempt in range(_MAX_SUBSTITUTES + 1):
                data, label = self.source[index]
                try:
                    T.random_resized_crop(
                        data, ui, size, self.scale, self.ratio, self.interpolation, out=images[i]
                    )
                    break
                except T.CorruptImageError as e:
                    skipped[i] += 1
                    log.debug("skipping record %d: %s", index, e)
                    if attempt < _MAX_SUBSTITUTES:
                        index = min(
                            len(self.source) - 1, int(ui[_U_SUB + attempt] * len(self.source))
                        )
            else:
                images[i] = 0
            labels[i] = label
            if self.hflip > 0 and ui[_U_FLIP] < self.hflip:
                T.hflip(images[i], out=images[i])
        return {"image": images, "label": labels, "skipped": skipped}


class EvalTransform:
    """record index (or -1 for padding) -> {"image", "label", "mask", "skipped"}."""

    def __init__(self, source, image_size: int, crop_pct: float, interpolation: str):
        T._check_interpolation(interpolation)
        self.source, self.image_size = source, image_size
        self.crop_pct, self.interpolation = crop_pct, interpolation

    def __call__(self, index: int) -> dict:
        blank = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        if index < 0:
            return {
                "image": blank,
                "label": np.int32(0),
                "mask": np.bool_(False),
                "skipped": np.int32(0),
            }
        data, label = self.source[index]
        try:
            img = T.center_crop_resize(data, self.image_size, self.crop_pct, self.interpolation)
        except T.CorruptImageError as e:
            log.debug("skipping record %d: %s", index, e)
            return {
                "image": blank,
                "label": np.int32(label),
                "mask": np.bool_(False),
                "skipped": np.int32(1),
            }
        return {
            "image": img,
            "label": np.int32(label),
            "mask": np.bool_(True),
            "skipped": np.int32(0),
        }


class _PaddedIndices:
    def __init__(self, num_records: int, padded: int):
        self.num_records, self.padded = num_records, padded

    def __len__(self) -> int:
        return self.padded

    def __getitem__(self, j: int) -> int:
        return int(j) if j < self.num_records else -1


def _ensure_absl_flags_parsed() -> None:
    # grain 0.2.18: mp_prefetch reads absl flags, which raises when JAX is imported and flags are
    # not parsed (not running under absl.app.run).
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class DataWorkerError(RuntimeError):
    """Grain's worker processes kept dying (killed, out of memory, a crash in a decoder)."""


# Grain's message when a worker process is gone (grain 0.2.x: "Worker process was terminated
# unexpectedly with exit code -9 ...").
_WORKER_DIED = "terminated unexpectedly"


class Loader:
    """An iterable of numpy batches over a Grain `MapDataset` of batches.

    `stats` holds "skipped" (corrupt records replaced or masked so far, this process), "batches",
    "records" and "worker_restarts". Iterating again starts again at the loader's first step.

    A worker process that dies (`workers > 0`) is replaced: the workers start again at the first
    batch not yet yielded, which is the same batch they would have made (batch k is a function of
    k alone), so the stream goes on unchanged. After `max_worker_restarts` deaths in one pass a
    `DataWorkerError` says so.
    """

    def __init__(
        self,
        batches: grain.MapDataset,
        *,
        workers: int,
        threads: int,
        prefetch: int,
        sharding=None,
        name: str = "loader",
        max_worker_restarts: int = 3,
    ):
        self.batches = batches
        self.workers, self.threads, self.prefetch = workers, threads, prefetch
        self.sharding = sharding
        self.name = name
        self.max_worker_restarts = max_worker_restarts
        self.stats = {"skipped": 0, "batches": 0, "records": 0, "worker_restarts": 0}

    def __len__(self) -> int:
        return len(self.batches)

    def _iter_dataset(self, start: int = 0) -> grain.IterDataset:
        ds = self.batches[start:] if start else self.batches
        ds = ds.to_iter_dataset(
            grain.ReadOptions(num_threads=max(1, self.threads), prefetch_buffer_size=self.prefetch)
        )
        if self.workers > 0:
            _ensure_absl_flags_parsed()
            ds = ds.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=self.workers, per_worker_buffer_size=max(1, self.prefetch)
                )
            )
        return ds

    def __iter__(self) -> Iterator[dict]:
        done = restarts = 0
        while True:
            it = iter(self._iter_dataset(done))
            try:
                for batch in it:
                    done += 1
                    skipped = batch.pop("skipped")
                    self.stats["skipped"] += int(np.sum(skipped))
                    self.stats["batches"] += 1
                    self.stats["records"] += int(
                        np.sum(batch["mask"]) if "mask" in batch else len(batch["label"])
                    )
                    if self.sharding is not None:
                        batch = to_global_arrays(batch, self.sharding)
                    yield batch
                return
            except RuntimeError as e:
                if self.workers == 0 or _WORKER_DIED not in str(e):
                    raise
                restarts += 1
                self.stats["worker_restarts"] += 1
                why = _exit_reason(str(e))
                if restarts > self.max_worker_restarts:
                    raise DataWorkerError(
                        f"{self.name} data: worker processes died {restarts} times ({why}), "
                        f"the last at batch {done} of this pass; if they run out of memory, "
                        f"use fewer (data.workers) or none (data.workers=0)"
                    ) from None
                log.warning(
                    "%s data: a worker process died (%s); restarting the workers at "
                    "batch %d of this pass",
                    self.name,
                    why,
                    done,
                )
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # closing workers that are already gone
                        pass


def _exit_reason(message: str) -> str:
    """'exit code -9' -> 'killed by SIGKILL, e.g. the out-of-memory killer'."""
    import re
    import signal

    m = re.search(r"exit code (-?\d+)", message)
    if not m:
        return "no exit code"
    code = int(m.group(1))
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", e.g. the out-of-memory killer" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


def to_global_arrays(batch: dict, sharding) -> dict:
    """Process-local numpy batch -> global jax.Arrays laid out with `sharding` (e.g. P('data'))."""
    import jax

    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def _default_threads() -> int:
    return min(16, os.cpu_count() or 1)


def make_train_loader(
    source,
    *,
    global_batch_size: int,
    image_size: int,
    seed: int,
    start_step: int = 0,
    num_epochs: int | None = None,
    workers: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    interpolation: str = "bilinear",
    threads: int | None = None,
    prefetch: int = 4,
    sharding=None,
) -> Loader:
    """Training batches {"image": uint8 [B_local, S, S, 3], "label": int32 [B_local]}.

    B_local = global_batch_size / process_count. Deterministic in `seed`: the same batches for any
    `workers`/`threads`, and `start_step=k` yields exactly the batches from step k on. Epoch e is a
    fresh global shuffle; each epoch has `steps_per_epoch(len(source), global_batch_size)` steps.
    `num_epochs=None` repeats forever. `workers>0` uses Grain multiprocessing prefetch (spawned
    processes; the entry script needs an `if __name__ == "__main__":` guard), `threads` prepare
    batches in parallel inside each process (one batch per thread; decoders release the GIL).
    With `sharding`, batches come back as global jax.Arrays.
    """
    n = len(source)
    if n == 0:
        raise ValueError("empty dataset: no records to train on")
    p, pc, local_batch = _process_layout(global_batch_size, process_index, process_count)
    per_epoch = steps_per_epoch(n, global_batch_size) * global_batch_size
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    indices = _EpochShuffledIndices(n, per_epoch, seed, num_epochs)
    ds = grain.MapDataset.source(_Steps(len(indices) // global_batch_size))
    if start_step:
        ds = ds[start_step:]
    ds = ds.map(
        TrainBatchTransform(
            source,
            indices,
            global_batch=global_batch_size,
            process_index=p,
            process_count=pc,
            seed=seed,
            image_size=image_size,
            scale=tuple(scale),
            ratio=tuple(ratio),
            hflip=hflip,
            interpolation=interpolation,
        )
    )
    return Loader(
        ds,
        workers=workers,
        threads=_default_threads() if threads is None else threads,
        prefetch=prefetch,
        sharding=sharding,
        name="train",
    )


def make_eval_loader(
    source,
    *,
    global_batch_size: int,
    image_size: int,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
    workers: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    threads: int | None = None,
    prefetch: int = 4,
    sharding=None,
) -> Loader:
    """Evaluation batches {"image", "label", "mask": bool [B_local]} in source order.

    The record list is padded to a whole number of global batches; padding (and corrupt records,
    counted in `.stats["skipped"]`) have mask False, so every record is evaluated exactly once
    across all processes.
    """
    n = len(source)
    if n == 0:
        raise ValueError("empty dataset: no records to evaluate")
    p, pc, local_batch = _process_layout(global_batch_size, process_index, process_count)
    padded = math.ceil(n / global_batch_size) * global_batch_size
    ds = grain.MapDataset.source(_PaddedIndices(n, padded))
    ds = ds.map(EvalTransform(source, image_size, crop_pct, interpolation))
    if pc > 1:
        ds = ds[p::pc]
    ds = ds.batch(local_batch, drop_remainder=False)
    return Loader(
        ds,
        workers=workers,
        threads=_default_threads() if threads is None else threads,
        prefetch=prefetch,
        sharding=sharding,
        name="eval",
    )
