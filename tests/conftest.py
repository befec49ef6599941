import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips the test when it is absent (e.g. a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared real-image data at {SHARED_DATA} (present in CI)")
    return SHARED_DATA
