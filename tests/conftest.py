import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Tests compile many small programs once each: cheaper XLA CPU compilation (same float32
# semantics; measured 1.5-2x less compile time on the equivalence tests).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)
# One persistent XLA compilation cache for the whole session, shared by the xdist workers (they
# inherit this environment from the controller) and the subprocesses tests start: many tests build
# the same model and train step from scratch, and the cache turns the repeats into lookups.
# EDGEJAX_TEST_NO_COMPILE_CACHE=1 turns it off.
_CREATED_CACHE = None
if not os.environ.get("EDGEJAX_TEST_NO_COMPILE_CACHE"):
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        _CREATED_CACHE = tempfile.mkdtemp(prefix="edgejax-test-xla-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _CREATED_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
    if "jax" in sys.modules:  # imported already (by a plugin): configure it directly
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips the test when it is absent (e.g. a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared real-image data at {SHARED_DATA} (present in CI)")
    return SHARED_DATA


def pytest_unconfigure(config):
    # the process that created the cache (the xdist controller, or a plain run) removes it
    if _CREATED_CACHE and not os.environ.get("PYTEST_XDIST_WORKER"):
        import shutil

        shutil.rmtree(_CREATED_CACHE, ignore_errors=True)
