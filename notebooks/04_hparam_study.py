# %% [markdown]
# # 04 · A small hyperparameter study
#
# A sweep is a file whose `get_config()` returns an `edgejax.sweep.sweep_config()` filled
# in: the base training config, the search space, the sampler and the pruner. Each trial is
# a training run in `<study-dir>/trials/<NNNN>/`; the Optuna study lives in
# `<study-dir>/study.db`, so re-running resumes. `edgejax.report` turns study and run
# directories into Markdown tables and plots.
#
# Here: the quickstart (digits) with horizontal flips on or off (a mirrored 2 is not a 2)
# and, with the full settings, three learning rates. From a shell:
#
# ```bash
# python -m edgejax.sweep --config sweep_digits.py --study-dir runs/digits_sweep --set num_epochs=3
# python -m edgejax.report runs/digits_sweep --out runs/digits_report
# ```

# %%
# Parameters. SMALL = tiny settings that run in seconds on a CPU (the tests set
# EDGEJAX_NB_SMALL=1); otherwise settings meant for a person. Change them freely.
import os

SMALL = os.environ.get("EDGEJAX_NB_SMALL", "0") == "1"
LRS = [4e-3] if SMALL else [1e-3, 4e-3, 1.6e-2]  # AdamW learning rates (grid)
HFLIPS = [0.0, 0.5]  # horizontal-flip probabilities (grid)
# SMALL: the same steps as 01_quickstart's SMALL run, so a shared compilation cache
# (the tests set JAX_COMPILATION_CACHE_DIR) serves both notebooks.
OVERRIDES = (
    [
        ("num_steps", 6),
        ("eval.every_steps", 3),
        ("global_batch_size", 32),
        ("ema.decay", 0.0),
        ("log.progress", False),
        ("log.every_steps", 1),
    ]
    if SMALL
    else [("num_epochs", 3.0), ("eval.every_epochs", 1.0)]
)

# %%
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets


def _repo_root():
    if os.environ.get("EDGEJAX_ROOT"):
        return Path(os.environ["EDGEJAX_ROOT"]).resolve()
    for p in [Path.cwd().resolve(), *Path.cwd().resolve().parents]:
        if (p / "edgejax" / "__init__.py").is_file():
            return p
    return None


ROOT = _repo_root()
try:
    import edgejax
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
    import edgejax
DATA = (ROOT.parent / "shared" / "data") if ROOT else Path("shared/data")
WORK = (
    Path(os.environ.get("EDGEJAX_NB_WORKDIR") or (ROOT or Path.cwd()) / "runs" / "notebooks")
    / "04_hparam_study"
)
WORK.mkdir(parents=True, exist_ok=True)

import jax

print(
    f"edgejax {edgejax.__version__}, jax {jax.__version__} on {jax.default_backend()} "
    f"({jax.device_count()} device(s)); SMALL={SMALL}"
)
print("shared data:", DATA if DATA.is_dir() else "absent (the bundled digits are used)")
print("artefacts in:", WORK)

# %% [markdown]
# ## The sweep config
#
# Written to a file, as you would keep it in `configs/sweeps/`. `grid=` gives the values of
# the grid sampler; with `sampler="tpe"` the same space is searched instead.

# %%
import textwrap

sweep_file = WORK / "sweep_digits.py"
sweep_file.write_text(
    textwrap.dedent(f"""
    from edgejax.sweep import categorical, loguniform, sweep_config

    def get_config(arg=None):
        s = sweep_config()
        s.name = "digits_flip_lr"
        s.description = "quickstart on digits: horizontal flip x learning rate"
        s.base = {str(ROOT / "configs" / "quickstart.py")!r}
        s.space = (categorical("data.hflip", {HFLIPS!r}),
                   loguniform("optimizer.lr", 1e-3, 2e-2, grid={LRS!r}))
        s.sampler = "grid"
        s.pruner = "none"
        return s
    """)
)

from edgejax.sweep import load_sweep

sweep = load_sweep(str(sweep_file))
print(sweep)

# %% [markdown]
# ## Run it
#
# `SweepRunner(sweep, study_dir, overrides=...).run()` is what `python -m edgejax.sweep`
# calls. JAX's persistent compilation cache (the command line keeps one in
# `<study-dir>/jax_cache`) lets trials whose training step compiles to the same program
# skip the compilation: the flip probability only changes the CPU data pipeline.

# %%
import shutil
from edgejax.sweep import SweepRunner

study_dir = WORK / "study"
if SMALL and study_dir.exists():
    shutil.rmtree(study_dir)  # the tests always start a fresh study
if not jax.config.jax_compilation_cache_dir:  # unless one is set already
    jax.config.update("jax_compilation_cache_dir", str(study_dir / "jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

runner = SweepRunner(sweep, study_dir, overrides=OVERRIDES)
result = runner.run()
{k: result[k] for k in ("complete", "pruned", "failed", "time_s", "best")}

# %% [markdown]
# ## The report
#
# `build_report(dirs, out)` writes `README.md` (tables, plots linked), `tables.json` and
# the PNGs: the trials table, top-1 per epoch of every trial, the optimisation history,
# parameter importances (with enough trials), every run's curves and the confusion matrix
# of the best run.

# %%
from IPython.display import Image, Markdown, display
from edgejax.report import build_report

from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's notes on read-only checkpoints
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # optuna: importances of a tiny study
    report = build_report([study_dir], WORK / "report", title="digits: flip x learning rate")
text = report["markdown"].read_text().split("## All runs")[0]
display(
    Markdown("\n".join(line for line in text.splitlines() if not line.startswith("![")))
)  # the plots are below

# %%
for path in report["plots"]:
    if "curves/" not in path.as_posix():  # the per-run curves are in the README
        print(path.name)
        display(Image(filename=str(path), width=520))
