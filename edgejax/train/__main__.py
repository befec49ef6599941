"""``python -m edgejax.train --config configs/<name>.py[:recipe] [--workdir runs/x] [--config.k=v]``.

Kept thin: flags -> ``edgejax.train.run``. Without ``--workdir`` the run goes to
``runs/<config file stem>[_<recipe>]`` (e.g. ``runs/repvgg_a2_optimized``); re-running the same
command resumes there. Several hosts: run the same command on every host with
``--coordinator=host0:1234 --num_processes=N --process_id=i`` (or ``--distributed`` where
``jax.distributed.initialize()`` detects the cluster by itself: SLURM, Open MPI, Cloud TPU).
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Training config file, e.g. configs/repvgg_a2.py or configs/repvgg_a2.py:optimized",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Run directory (created; re-running resumes). Default: runs/<config file stem>[_<config arg>].",
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with cluster auto-detection."
)
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 (several hosts).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (several hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (several hosts).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from absl import logging as absl_logging

    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    import jax

    if _COORDINATOR.value:
        # CPU devices need a collectives implementation for cross-process reductions (set
        # before any backend starts; it does not affect GPU/TPU devices).
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except Exception:  # option renamed or absent on some builds
            pass
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()
    from edgejax.data import DataWorkerError, DatasetError
    from edgejax.train import ConfigError, NonFiniteLossError, run
    from edgejax.train.checkpoint import CheckpointWriteError

    workdir = _WORKDIR.value or default_workdir(_CONFIG_ARG[0])
    if not _WORKDIR.value:
        print(
            f"edgejax.train: workdir {workdir} (pass --workdir to choose another)",
            file=sys.stderr,
            flush=True,
        )
    try:
        run(_CONFIG.value, workdir)
    except (
        ConfigError,
        NonFiniteLossError,
        DatasetError,
        DataWorkerError,
        CheckpointWriteError,
    ) as e:
        print(f"edgejax.train: error: {e}", file=sys.stderr)
        sys.exit(1)


_CONFIG_ARG = [""]  # the --config value as given (file[:arg]), for the default workdir


def default_workdir(config_arg: str) -> str:
    """``configs/repvgg_a2.py:optimized`` -> ``runs/repvgg_a2_optimized``."""
    import os

    path, _, arg = config_arg.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0] or "run"
    return os.path.join("runs", f"{stem}_{arg}" if arg else stem)


def _unknown_override(argv) -> str | None:
    """The first ``--config.<key>=...`` whose key the schema does not know, as a message."""
    import difflib

    from edgejax.train.config import _flat, base_config

    known = list(_flat(base_config().to_dict()))
    for arg in argv[1:]:
        if arg.startswith("--config."):
            key = arg[len("--config.") :].split("=", 1)[0]
            if key not in known:
                close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
                hint = f" Did you mean {' or '.join(close)}?" if close else ""
                return f"Unknown config key {key!r} in {arg!r}.{hint}"
    return None


def _parse_flags(argv):
    for i, a in enumerate(argv[1:], 1):
        if a.startswith("--config="):
            _CONFIG_ARG[0] = a[len("--config=") :]
        elif a == "--config" and i + 1 < len(argv):
            _CONFIG_ARG[0] = argv[i + 1]
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"edgejax.train: error: {e}", file=sys.stderr)
        sys.exit(2)
    except SyntaxError as e:  # the config file itself does not parse
        where = f"{e.filename}, line {e.lineno}" if e.lineno else (e.filename or _CONFIG_ARG[0])
        text = f": {e.text.strip()}" if e.text else ""
        print(f"edgejax.train: error: config {where}: {e.msg}{text}", file=sys.stderr)
        sys.exit(2)
    except (AttributeError, KeyError) as e:  # config_flags on an unknown override key
        msg = _unknown_override(argv) or f"bad config override: {e}"
        print(f"edgejax.train: error: {msg}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, TypeError, NameError, ImportError) as e:  # raised by get_config()
        print(
            f"edgejax.train: error: config {_CONFIG_ARG[0]}: {type(e).__name__}: {e}",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=_parse_flags)
