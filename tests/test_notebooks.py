"""Execute every tutorial notebook top to bottom on CPU, in the small settings.

The source of each notebook is ``notebooks/<name>.py`` (py:percent, paired with the committed
``.ipynb`` by jupytext); the tests execute the source. Each notebook runs in a fresh kernel of this interpreter (``sys.executable``) with
``EDGEJAX_NB_SMALL=1`` (tiny settings), ``JAX_PLATFORMS=cpu`` and its artefacts under a temporary
``EDGEJAX_NB_WORKDIR``; the working directory is ``notebooks/``. Nothing is written back: the
notebooks in git stay without outputs. A failure shows the failing cell and its traceback.

    python -m pytest tests/test_notebooks.py -m notebooks -v
    python tests/test_notebooks.py 02_models      # one notebook, with cell timings
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 900  # one cell; a whole notebook takes well under a minute on 2 cores
KERNEL_NAME = "edgejax-notebook-test"


def _kernel_spec_dir(
    tmp: Path, workdir: Path, compile_cache: Path, extra_env: dict | None = None
) -> Path:
    """A kernelspec that starts ``sys.executable`` (not whatever 'python3' kernel is installed)
    with the small settings in its environment."""
    kernels = tmp / "kernels"
    spec = kernels / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        "EDGEJAX_NB_SMALL": "1",
        "EDGEJAX_NB_WORKDIR": str(workdir),
        "EDGEJAX_ROOT": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": pythonpath,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "TQDM_DISABLE": "1",
        # One persistent compilation cache for the whole session: 01_quickstart and
        # 04_hparam_study train the same program, 02_models and 05_deploy run the same model.
        "JAX_COMPILATION_CACHE_DIR": str(compile_cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        **(extra_env or {}),
    }
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable,
                    "-Xfrozen_modules=off",
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "edgejax notebook test",
                "language": "python",
                "env": env,
            }
        )
    )
    return kernels


def execute_notebook(
    name: str, tmp: Path, compile_cache: Path | None = None, env: dict | None = None
):
    """Execute ``notebooks/<name>`` in memory; returns (seconds, [(cell index, seconds, first
    line)], executed notebook). ``compile_cache``: JAX's persistent compilation cache directory
    (default: one under ``tmp``); ``env`` adds to the kernel's environment. Raises
    ``nbclient.exceptions.CellExecutionError`` on the first failing cell."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = _source_notebook(name)
    ksm = KernelSpecManager(
        kernel_dirs=[
            str(_kernel_spec_dir(tmp, tmp / "work", compile_cache or tmp / "jax_cache", env))
        ]
    )
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        record_timing=True,
        allow_errors=False,
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    finally:  # nbclient leaves a kernel it did not create running: stop it (it holds GBs)
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    total = time.perf_counter() - t0
    cells = []
    for i, cell in enumerate(nb.cells):
        t = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in t and "shell.execute_reply" in t:
            from datetime import datetime

            start = datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
            cells.append((i, (end - start).total_seconds(), cell.source.splitlines()[0][:60]))
    return total, cells, nb


def _source_notebook(name: str):
    """``notebooks/<stem>.py`` (py:percent, the source) as an nbformat notebook."""
    import jupytext

    return jupytext.read(NOTEBOOK_DIR / name.replace(".ipynb", ".py"))


def test_notebooks_are_paired_and_stripped():
    """Each notebook's source is its py:percent file; the committed .ipynb holds the same cells,
    without outputs (``jupytext --sync notebooks/*.py`` after editing a source)."""
    pytest.importorskip("jupytext")
    sources = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    assert sources == [n.removesuffix(".ipynb") for n in NOTEBOOKS], (
        "every notebook needs its .py source and the other way round"
    )
    for name in NOTEBOOKS:
        nb = json.loads((NOTEBOOK_DIR / name).read_text())
        assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent", f"{name}: not paired"
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, (
                    f"{name}: outputs are not stripped"
                )
        source = _source_notebook(name)
        paired = [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]
        assert paired == [(c.cell_type, c.source) for c in source.cells], (
            f"{name} and its .py differ: run jupytext --sync notebooks/{name}"
        )


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
    """One JAX compilation cache for the session's notebooks: 01_quickstart and 04_hparam_study
    train the same program, 02_models and 05_deploy run the same model."""
    return tmp_path_factory.mktemp("jax_cache")


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, tmp_path, compile_cache):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    import subprocess

    # in a child process: nbclient's event-loop handling stays out of the test worker, where it
    # left orbax's asyncio.run (checkpoint restore) of a later test blocked for good
    r = subprocess.run(
        [sys.executable, __file__, name, "--cache", str(compile_cache)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.fail(f"{name}: a cell failed:\n{r.stderr[-4000:]}", pytrace=False)
    print(r.stdout.strip())


if __name__ == "__main__":
    import argparse
    import nbformat

    parser = argparse.ArgumentParser(description="Execute notebooks as the tests do, with timings.")
    parser.add_argument("names", nargs="*", help="notebook names or prefixes (default: all)")
    parser.add_argument("--out", help="also write the executed notebooks into this directory")
    parser.add_argument("--full", action="store_true", help="the full settings (not SMALL)")
    parser.add_argument("--cache", help="JAX's compilation cache directory (default: a new one)")
    args = parser.parse_args()
    os.environ.setdefault(
        "XLA_FLAGS",
        "--xla_backend_optimization_level=0 "  # as conftest.py
        "--xla_llvm_disable_expensive_passes=true",
    )
    cache = Path(args.cache or tempfile.mkdtemp(prefix="edgejax-nb-jax-cache-"))
    for arg in args.names or NOTEBOOKS:
        nb_name = arg if arg.endswith(".ipynb") else next(n for n in NOTEBOOKS if n.startswith(arg))
        with tempfile.TemporaryDirectory() as d:
            total, cells, executed = execute_notebook(
                nb_name, Path(d), cache, {"EDGEJAX_NB_SMALL": "0"} if args.full else None
            )
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            nbformat.write(executed, str(Path(args.out) / nb_name))
        print(f"{nb_name}: {total:.1f} s")
        for i, s, line in cells:
            print(f"  cell {i:2d} {s:6.1f} s  {line}")
