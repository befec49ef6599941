import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Tests compile many small programs once each: cheaper XLA CPU compilation (same float32
# semantics; measured 1.5-2x less compile time on the equivalence tests).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips the test when it is absent (e.g. a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared real-image data at {SHARED_DATA} (present in CI)")
    return SHARED_DATA
