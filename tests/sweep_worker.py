"""One sweep worker as its own process, for the shared-study tests (tests/test_sweep_postgres.py):
``python tests/sweep_worker.py SWEEP STUDY_DIR STORAGE GROUP_SIZE EPOCH_S [real]``.

Trains with the stand-ins of tests/test_sweep.py (each epoch takes EPOCH_S seconds, so that a test
can kill the worker mid-trial) or, with ``real``, with ``edgejax.train``. Every start of a trial
appends ``{"pid", "first_epoch"}`` to ``<workdir>/starts.jsonl``: the epoch it began from tells
whether a retried trial resumed where the killed worker left it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def record_start(workdir, first_epoch):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "starts.jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "first_epoch": int(first_epoch)}) + "\n")


def slowed(report_fn, epoch_s):
    def report(*args):
        time.sleep(epoch_s)  # after the epoch's row is written: a kill lands between epochs
        return report_fn(*args)

    return report


def main(argv):
    sweep_path, study_dir, storage, group_size, epoch_s = argv[:5]
    real = argv[5:] == ["real"]
    group_size, epoch_s = int(group_size), float(epoch_s)
    from edgejax.sweep import SweepRunner, eval_records, load_sweep

    def train(config, workdir, *, report_fn=None):
        record_start(workdir, len(eval_records(workdir)) + 1)
        if real:
            from edgejax.train import run

            return run(config, workdir, report_fn=report_fn)
        from test_sweep import FakeTrain

        return FakeTrain()(config, workdir, report_fn=slowed(report_fn, epoch_s))

    def train_group(configs, workdirs, *, report_fn=None, group_dir=None, mode="auto"):
        for w in workdirs:
            record_start(w, len(eval_records(w)) + 1)
        if real:
            from edgejax.train import run_group

            return run_group(configs, workdirs, report_fn=report_fn, group_dir=group_dir, mode=mode)
        from test_sweep import FakeGroupTrain

        return FakeGroupTrain()(
            configs, workdirs, report_fn=slowed(report_fn, epoch_s), group_dir=group_dir, mode=mode
        )

    runner = SweepRunner(
        load_sweep(sweep_path),
        study_dir,
        storage=storage,
        train_fn=train,
        group_train_fn=train_group,
        group_size=group_size,
    )
    summary = runner.run()
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
