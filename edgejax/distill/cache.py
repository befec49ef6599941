"""Offline distillation (TinyViT's fast distillation): the teacher's sparse targets, written once.

    python -m edgejax.distill.cache --config configs/X.py[:arg] --out runs/kd_cache \
        [--top-k 10] [--config.key=value ...]

The config is the student's training config, teacher included (``config.distill``). For every
step of that run the command rebuilds the batch the student will be fed (the same loader, the
same on-device augmentation keyed by the run's seeds and the step: the augmentation seed of
sample i at step k is (data seed, seed, k, i)), runs the teacher on it and writes, per sample,
the teacher's top-K logits (float16) and their class indices (int16), the log-sum-exp of all its
logits at the distillation temperature (float32, so the probabilities of the top K are exact and
the rest of the mass is spread over the other classes) and a digest of the input's bits. One
ArrayRecord file per epoch (``epoch-00000.array_record``), written under a temporary name and
renamed when complete, so an interrupted command resumes at the first missing epoch.

Training the same config with ``--config.distill.cache=DIR`` replays the same batches and reads
the targets instead of running the teacher; the step checks each input's digest against the one
the teacher saw (``cache_mismatch`` in the train metrics, said in one line when not 0). A cache
written for another run (seeds, data, augmentation, schedule of stages, teacher, temperature) is
refused, naming the keys that differ.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

__all__ = ["write_cache", "DistillCache", "sparse_probs", "fingerprint"]


def record_dtype(k: int) -> np.dtype:
    return np.dtype(
        [
            ("step", "<i8"),
            ("position", "<i4"),
            ("digest", "<u4"),
            ("lse", "<f4"),
            ("values", "<f2", (k,)),
            ("indices", "<i2", (k,)),
        ]
    )


def _err(msg: str):
    from edgejax.train.config import ConfigError

    return ConfigError(msg)


def fingerprint(config, plan) -> dict:
    """What decides the inputs a run feeds its model and the teacher's targets: a cache is
    read only by a run whose fingerprint equals the one it was written for."""
    from edgejax.train.config import _flat, data_seed

    flat = _flat(config.to_dict())
    keep = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in flat.items()
        if k.startswith(("augment.", "progressive."))
        or k in ("seed", "model.name", "global_batch_size", "num_epochs", "num_steps")
        or (k.startswith("data.") and k not in ("data.workers", "data.eval_split"))
        or (k.startswith("distill.") and k not in ("distill.alpha", "distill.cache"))
    }
    keep["data.seed"] = data_seed(config)
    keep["data.dataset"] = os.path.abspath(config.data.dataset)
    keep["steps"] = plan.total_steps
    return keep


def _epochs(plan):
    """(epoch, first step, end step) of every epoch of the run."""
    out = []
    for st in plan.stages:
        for e in range(st.first_epoch, st.end_epoch):
            a = st.start_step + (e - st.first_epoch) * st.steps_per_epoch
            b = min(a + st.steps_per_epoch, st.end_step)
            if b > a:
                out.append((e, a, b))
    return out


def _prepare(config):
    """Validated config, training source, class names, plan, the student's mean / std / size."""
    import edgejax
    from edgejax import data
    from edgejax.train.config import resolve_dataset, resolve_dtype, validate
    from edgejax.train.progressive import make_plan

    config = resolve_dtype(validate(config), lambda msg: None)
    if not config.distill.teacher:
        raise _err("config distill.teacher is not set: a cache holds a teacher's targets")
    train_src, info = data.build_source(
        resolve_dataset(config.data.dataset), config.data.train_split
    )
    minfo = edgejax.model_info(config.model.name)
    size = config.data.image_size or minfo["input_size"][1]
    plan = make_plan(config, len(train_src), size)
    mean = tuple(float(v) for v in (config.data.mean or minfo["mean"]))
    std = tuple(float(v) for v in (config.data.std or minfo["std"]))
    interpolation = config.data.interpolation or minfo["interpolation"]
    return config, train_src, list(info["class_names"]), plan, mean, std, interpolation


def write_cache(config, out: str, *, top_k: int = 10, progress: bool = True, say=None) -> dict:
    """Write (or finish) the cache of ``config``'s run in ``out``; -> its metadata."""
    import jax
    import jax.numpy as jnp

    from edgejax.distill import load_teacher, teacher_logits
    from edgejax.train.hparams import Features, hparams
    from edgejax.train.loop import train_batches
    from edgejax.train.progressive import stage_config
    from edgejax.train.state import augment_rng
    from edgejax.train.step import augment_batch, batch_key, input_digest

    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    config, train_src, classes, plan, mean, std, interpolation = _prepare(config)
    num_classes = len(classes)
    if num_classes > np.iinfo(np.int16).max:
        raise _err(f"{num_classes} classes do not fit the cache's int16 class indices")
    k = int(min(top_k, num_classes))
    if k < 1:
        raise _err(f"--top-k must be >= 1, got {top_k}")
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else None
    teacher = load_teacher(config, num_classes=num_classes, class_names=classes, dtype=dtype)
    meta = {
        "fingerprint": fingerprint(config, plan),
        "top_k": k,
        "num_classes": num_classes,
        "class_names": classes,
        "teacher": {
            "model": teacher.definition.name,
            "weights": teacher.source,
            "image_size": teacher.definition.image_size,
            "mean": list(teacher.definition.mean),
            "std": list(teacher.definition.std),
            "hard": teacher.definition.hard,
        },
        "temperature": float(config.distill.temperature),
        "epochs": [[e, a, b] for e, a, b in _epochs(plan)],
        "samples": plan.samples_at(plan.total_steps),
    }
    os.makedirs(out, exist_ok=True)
    meta_path = os.path.join(out, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        differ = _differ(old.get("fingerprint", {}), meta["fingerprint"])
        if differ or old.get("top_k") != k:
            what = differ or [f"top_k {old.get('top_k')} -> {k}"]
            raise _err(
                f"{out} holds the cache of another run ({'; '.join(what)}): give another --out"
            )
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)

    features = Features.of([config])
    rng_data = augment_rng(int(config.seed))
    temperature = jnp.float32(config.distill.temperature)
    weights = jax.device_put(teacher.weights)

    @jax.jit
    def targets(images, labels, step, hp, weights):
        rng = batch_key(rng_data, step)
        x, _ = augment_batch(config, features, hp, num_classes, mean, std, rng, images, labels)
        t = teacher_logits(teacher.definition, weights, x, mean, std)
        values, indices = jax.lax.top_k(t, k)
        lse = jax.nn.logsumexp(t / temperature, axis=-1)
        return input_digest(x), values.astype(jnp.float16), indices.astype(jnp.int16), lse

    from array_record.python.array_record_module import ArrayRecordWriter

    from edgejax.data.sources import ARRAY_RECORD_OPTIONS

    rec_dtype = record_dtype(k)
    epochs = _epochs(plan)
    todo = [(e, a, b) for e, a, b in epochs if not _complete(out, e, plan, a, b, rec_dtype)]
    if len(todo) < len(epochs):
        say(
            f"edgejax.distill.cache: {out} has {len(epochs) - len(todo)} of {len(epochs)} "
            f"epochs; writing the rest"
        )
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=sum(b - a for _, a, b in todo), unit="step", file=sys.stderr)
    for e, a, b in todo:
        path = _epoch_path(out, e)
        tmp = path + ".tmp"
        writer = ArrayRecordWriter(tmp, ARRAY_RECORD_OPTIONS)
        batches = iter(train_batches(config, plan, train_src, a, interpolation=interpolation))
        hp_stage, hp = None, None
        try:
            for step in range(a, b):
                batch = next(batches)
                st = plan.stage_at(step)
                if hp_stage != st.index:
                    hp_stage = st.index
                    hp = hparams(
                        stage_config(config, st.index), plan.steps_per_epoch, plan.total_steps
                    )
                digest, values, indices, lse = jax.device_get(
                    targets(batch["image"], batch["label"], np.int32(step), hp, weights)
                )
                rows = np.zeros(len(digest), rec_dtype)
                rows["step"], rows["position"] = step, np.arange(len(digest))
                rows["digest"], rows["lse"] = digest, lse
                rows["values"], rows["indices"] = values, indices
                for row in rows:
                    writer.write(row.tobytes())
                if bar is not None:
                    bar.update(1)
        finally:
            batches.close()
            writer.close()
        os.replace(tmp, path)
    if bar is not None:
        bar.close()
    say(
        f"edgejax.distill.cache: {out}: {len(epochs)} epochs, {meta['samples']} samples, "
        f"top-{k} of {num_classes} classes from {teacher.describe()}"
    )
    return meta


def _epoch_path(out: str, e: int) -> str:
    return os.path.join(out, f"epoch-{e:05d}.array_record")


def _complete(out: str, e: int, plan, a: int, b: int, rec_dtype) -> bool:
    path = _epoch_path(out, e)
    if not os.path.exists(path):
        return False
    expect = plan.samples_at(b) - plan.samples_at(a)
    try:
        from array_record.python.array_record_data_source import ArrayRecordDataSource

        n = len(ArrayRecordDataSource([path]))
    except Exception:  # a damaged file: written again
        return False
    return n == expect


def _differ(old: dict, new: dict) -> list[str]:
    return [
        f"{key} {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


class DistillCache:
    """A cache written by :func:`write_cache`, opened for the run ``config`` describes."""

    def __init__(self, path: str, config, plan, class_names):
        from edgejax.train.config import ConfigError

        self.path = os.path.abspath(path)
        meta_path = os.path.join(self.path, "meta.json")
        if not os.path.exists(meta_path):
            raise ConfigError(
                f"config distill.cache: {self.path} is not a distillation cache (no meta.json): "
                f"write it with python -m edgejax.distill.cache --config ... --out {path}"
            )
        with open(meta_path) as f:
            self.meta = json.load(f)
        differ = _differ(self.meta["fingerprint"], fingerprint(config, plan))
        if differ:
            raise ConfigError(
                f"config distill.cache: {self.path} was written for another run "
                f"({'; '.join(differ[:6])}{' ...' if len(differ) > 6 else ''}): write a cache "
                f"for this config"
            )
        if list(self.meta["class_names"]) != list(class_names):
            raise ConfigError(
                f"config distill.cache: {self.path} was written for other class names"
            )
        self.plan, self.k = plan, int(self.meta["top_k"])
        self.dtype = record_dtype(self.k)
        files = []
        for e, a, b in self.meta["epochs"]:
            if not _complete(self.path, e, plan, a, b, self.dtype):
                raise ConfigError(
                    f"config distill.cache: {self.path} lacks epoch {e} (the command that writes "
                    f"it was interrupted?): run it again to finish the cache"
                )
            files.append(_epoch_path(self.path, e))
        from array_record.python.array_record_data_source import ArrayRecordDataSource

        self._ds = ArrayRecordDataSource(files)

    def teacher(self):
        """The teacher's static description (no weights: the step reads its targets)."""
        from . import Teacher, TeacherDef

        t = self.meta["teacher"]
        d = TeacherDef(
            t["model"], None, t["image_size"], tuple(t["mean"]), tuple(t["std"]), t["hard"]
        )
        return Teacher(d, None, f"cache {self.path}")

    def batch(self, step: int, rows: slice | None = None) -> dict:
        """The cached targets of step ``step`` (this process's ``rows`` of the global batch)."""
        st = self.plan.stage_at(step)
        first = self.plan.samples_at(step)
        idx = list(range(first, first + st.batch_size))[rows or slice(None)]
        raw = (
            self._ds.__getitems__(idx)
            if hasattr(self._ds, "__getitems__")
            else [self._ds[i] for i in idx]
        )
        recs = np.frombuffer(b"".join(raw), self.dtype)
        if np.any(recs["step"] != step):
            raise ValueError(
                f"{self.path}: the records read for step {step} belong to step(s) "
                f"{sorted(set(recs['step'].tolist()))}: the cache is damaged; write it again"
            )
        return {
            "kd_values": np.asarray(recs["values"]),
            "kd_indices": np.asarray(recs["indices"]),
            "kd_lse": np.asarray(recs["lse"]),
            "kd_digest": np.asarray(recs["digest"]),
        }


def sparse_probs(batch: dict, temperature, num_classes: int):
    """[B, C] teacher probabilities at ``temperature`` from a cache's sparse targets: exact for
    the top K classes, the rest of the mass spread evenly over the others."""
    import jax.numpy as jnp

    values = batch["kd_values"].astype(jnp.float32)
    indices = batch["kd_indices"].astype(jnp.int32)
    lse = batch["kd_lse"].astype(jnp.float32)
    top = jnp.exp(values / temperature - lse[:, None])
    k = values.shape[1]
    rest = jnp.clip(1.0 - jnp.sum(top, axis=1), 0.0, 1.0) / max(num_classes - k, 1)
    if num_classes == k:
        rest = jnp.zeros_like(rest)
    probs = jnp.broadcast_to(rest[:, None], (values.shape[0], num_classes))
    return probs.at[jnp.arange(values.shape[0])[:, None], indices].set(top)


def main(argv=None) -> int:
    from absl import flags
    from ml_collections import config_flags

    flags_ = flags.FlagValues()
    cfg = config_flags.DEFINE_config_file(
        "config",
        None,
        "the student's training config (teacher in config.distill)",
        flag_values=flags_,
        lock_config=True,
    )
    out = flags.DEFINE_string("out", None, "the cache directory", flag_values=flags_)
    top_k = flags.DEFINE_integer("top_k", 10, "teacher logits kept per sample", flag_values=flags_)
    progress = flags.DEFINE_bool("progress", True, "show a progress bar", flag_values=flags_)
    argv = list(sys.argv if argv is None else argv)
    argv = [a.replace("--top-k", "--top_k", 1) if a.startswith("--top-k") else a for a in argv]
    prog = "edgejax.distill.cache"
    try:
        flags_(argv)
    except Exception as e:  # noqa: BLE001  (flag, config-file and override errors: one line)
        from edgejax.train.__main__ import _unknown_override

        print(f"{prog}: error: {_unknown_override(argv) or e}", file=sys.stderr)
        return 2
    if cfg.value is None or not out.value:
        print(f"{prog}: error: --config and --out are required", file=sys.stderr)
        return 2
    from edgejax.train.config import ConfigError

    try:
        write_cache(cfg.value, out.value, top_k=top_k.value, progress=progress.value)
    except (ConfigError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
