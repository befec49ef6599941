"""``python -m edgejax.sweep --config configs/sweeps/<name>.py[:arg] --study-dir DIR``.

Kept thin: flags -> ``SweepRunner``. ``--group-size K`` trains K trials at once (a trial group). ``--workers K`` starts K worker processes on this machine
sharing the study; on other machines run the same command with the same ``--storage`` URL.
Re-running the command resumes the study.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgejax.sweep",
        description="Run (or resume) an Optuna sweep whose trials are edgejax training runs.",
    )
    p.add_argument(
        "--config",
        required=True,
        help="sweep config, e.g. configs/sweeps/augment_stack.py:repvgg_a2",
    )
    p.add_argument(
        "--study-dir",
        required=True,
        help="study directory: trials/<NNNN>/ workdirs, sweep.json, study.db",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="SQLAlchemy URL shared by all workers (default sqlite:///STUDY_DIR/study.db),"
        " e.g. postgresql://user:pw@host/db or mysql+pymysql://user:pw@host/db",
    )
    p.add_argument(
        "--n-trials",
        type=int,
        default=None,
        help="finished trials the study should hold (default: the sweep's n_trials, "
        "or the grid size)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this machine (e.g. one per accelerator)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training-config key in every trial, e.g. --set num_epochs=5 "
        "--set data.dataset=/data/cifar10 (repeatable; --config.num_epochs=5, "
        "as edgejax.train takes it, is the same)",
    )
    p.add_argument(
        "--group-size",
        type=int,
        default=1,
        metavar="K",
        help="train up to K trials at once as one trial group (one input pipeline, "
        "one compiled step; trials must share model, input size, batch size and "
        "optimizer kind, others run in their own groups)",
    )
    p.add_argument(
        "--group-mode",
        choices=("auto", "vmap", "sequential"),
        default="auto",
        help="how a group advances its trials: one vmapped call, or the same step "
        "once per trial (auto: sequential on CPU, vmap on GPU/TPU)",
    )
    p.add_argument("--study-name", default=None, help="override the sweep's study name")
    p.add_argument(
        "--sampler",
        choices=("tpe", "grid", "random"),
        default=None,
        help="override the sweep's sampler",
    )
    p.add_argument(
        "--pruner",
        choices=("none", "median", "hyperband"),
        default=None,
        help="override the sweep's pruner",
    )
    p.add_argument(
        "--keep-checkpoints",
        choices=("best", "all", "none"),
        default="best",
        help="what to keep of a finished trial's checkpoints (default: best weights)",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="seconds between worker heartbeats; a trial silent for 3x this is retried",
    )
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep JAX's persistent compilation cache in STUDY_DIR/jax_cache",
    )
    return p


def _spawn(argv: list[str], k: int) -> int:
    """Start ``k`` single-worker copies of this command; forward Ctrl-C / SIGTERM to them."""
    rest = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        rest.append(a)
    procs = []
    for i in range(k):
        env = dict(os.environ, EDGEJAX_SWEEP_WORKER=str(i))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "edgejax.sweep", *rest, "--workers", "1"], env=env
            )
        )

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes, key=abs)


def _train_flags_as_set(argv):
    """``--config.KEY=VALUE`` (or ``--config.KEY VALUE``), as ``edgejax.train`` takes it ->
    ``--set KEY=VALUE``: both commands override a training-config key the same way."""
    out, args = [], iter(argv)
    for a in args:
        if a.startswith("--config."):
            kv = a[len("--config.") :]
            if "=" not in kv:
                kv = f"{kv}={next(args, '')}"
            out += ["--set", kv]
        else:
            out.append(a)
    return out


def main(argv=None) -> int:
    argv = _train_flags_as_set(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    from .config import SweepConfigError, load_sweep, parse_overrides
    from .space import SpaceError

    try:
        sweep = load_sweep(args.config)
        if args.study_name:
            sweep.name = args.study_name
        if args.sampler:
            sweep.sampler = args.sampler
        if args.pruner:
            sweep.pruner = args.pruner
        overrides = parse_overrides(args.set)
    except (SweepConfigError, SpaceError) as e:
        print(f"edgejax.sweep: error: {e}", file=sys.stderr)
        return 2
    if not args.no_compile_cache:
        import jax

        jax.config.update(
            "jax_compilation_cache_dir", os.path.join(os.path.abspath(args.study_dir), "jax_cache")
        )
    from edgejax.train import ConfigError
    from .study import SweepRunner

    try:
        # Create the study (and recover dead trials) once, before any worker starts.
        runner = SweepRunner(
            sweep,
            args.study_dir,
            storage=args.storage,
            overrides=overrides,
            keep_checkpoints=args.keep_checkpoints,
            heartbeat_s=args.heartbeat,
            group_size=args.group_size,
            group_mode=args.group_mode,
        )
    except (ConfigError, SweepConfigError, SpaceError) as e:
        print(f"edgejax.sweep: error: {e}", file=sys.stderr)
        return 2
    if args.workers > 1:
        runner.recover()
        return _spawn(argv, args.workers)

    def on_term(signum, frame):  # between trials; inside one, the training loop saves and stops
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    summary = runner.run(args.n_trials)
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
