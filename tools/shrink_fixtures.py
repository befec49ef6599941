"""Re-save fixtures with the stored logits cut to timm_fixture_lib.STORED_CLASSES (no torch needed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import timm_fixture_lib as lib  # noqa: E402

for path in sorted(lib.FIXTURE_DIR.glob("*.npz")):
    meta, arrays = lib.load_fixture(path)
    if arrays["eval_logits"].shape[1] > lib.STORED_CLASSES:
        lib.save_fixture(path, meta, arrays)
        print(f"{path.name}: {path.stat().st_size / 1024:.1f} KiB")
