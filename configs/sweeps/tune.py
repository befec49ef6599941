"""A joint hyperparameter search on one model (TPE + Hyperband): optimizer, its learning rate
(range per optimizer), momentum (SGD only), weight decay, warmup, batch size and label smoothing,
on top of the model's ``optimized`` recipe (RandAugment + Mixup + CutMix + EMA).

Command::

    python -m edgejax.sweep --config configs/sweeps/tune.py:mobilenetv3_large_100 \
        --study-dir runs/tune_mnv3 --n-trials 40 --workers 4
    # several machines: the same command with --storage postgresql://user:pw@host/edgejax
"""

from edgejax.sweep import categorical, loguniform, sweep_config, uniform
from edgejax.train.recipes import MODEL_TRAITS


def get_config(arg=None):
    if arg not in MODEL_TRAITS:
        raise ValueError(f"tune.py needs a model: one of {', '.join(MODEL_TRAITS)}, got {arg!r}")
    s = sweep_config()
    s.name = f"tune_{arg}"
    s.description = f"TPE search over optimizer / lr / wd / warmup / batch / smoothing on {arg}"
    s.base = f"configs/{arg}.py:optimized"
    s.space = (
        categorical("optimizer.name", ["sgd", "adamw"]),
        loguniform("optimizer.lr", 0.01, 0.2, name="sgd_lr", when={"optimizer.name": "sgd"}),
        uniform("optimizer.momentum", 0.8, 0.99, when={"optimizer.name": "sgd"}),
        categorical("optimizer.nesterov", [False, True], when={"optimizer.name": "sgd"}),
        loguniform(
            "optimizer.weight_decay", 1e-6, 1e-3, name="sgd_wd", when={"optimizer.name": "sgd"}
        ),
        loguniform("optimizer.lr", 1e-4, 3e-3, name="adamw_lr", when={"optimizer.name": "adamw"}),
        loguniform(
            "optimizer.weight_decay", 1e-3, 0.1, name="adamw_wd", when={"optimizer.name": "adamw"}
        ),
        uniform("schedule.warmup_epochs", 0.0, 5.0),
        categorical("global_batch_size", [128, 256, 512, 1024]),
        uniform("augment.label_smoothing", 0.0, 0.2),
    )
    s.sampler = "tpe"
    s.tpe_startup_trials = 8
    s.pruner = "hyperband"
    s.n_trials = 40
    return s
