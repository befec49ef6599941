"""Metric writers: ``metrics.jsonl`` (always), TensorBoard (when ``tensorboardX`` or
``torch.utils.tensorboard`` is installed) and a console progress bar (loss, lr, img/s, ETA).

Only process 0 writes; other processes get a logger that does nothing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

__all__ = ["MetricLogger"]


def _tb_writer(logdir: str):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(logdir)


def _clean(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)


class MetricLogger:
    """``log(kind, step, metrics)`` appends ``{"kind", "step", "time", **metrics}`` to
    ``metrics.jsonl`` and writes scalars ``<kind>/<name>`` to TensorBoard."""

    def __init__(
        self,
        workdir: str,
        *,
        total_steps: int,
        start_step: int = 0,
        global_batch_size: int = 0,
        tensorboard: bool = True,
        progress: bool = True,
        active: bool = True,
    ):
        self.active = active
        self.total_steps, self.batch = total_steps, global_batch_size
        self._jsonl = self._tb = self._bar = None
        if not active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
        if tensorboard:
            self._tb = _tb_writer(os.path.join(workdir, "tb"))
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps,
                initial=start_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=1.0,
                smoothing=0.1,
            )
        self._t0, self._s0 = time.perf_counter(), start_step

    def log(self, kind: str, step: int, metrics: dict) -> None:
        if not self.active:
            return
        row = {"kind": kind, "step": int(step), "time": round(time.time(), 3)}
        row.update(
            {
                k: (_clean(v) if isinstance(v, (int, float)) or hasattr(v, "dtype") else v)
                for k, v in metrics.items()
                if k not in row
            }
        )
        self._jsonl.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("kind", "step", "time") and isinstance(v, float):
                    self._tb.add_scalar(f"{kind}/{k}", v, int(step))

    def progress(self, step: int, metrics: dict) -> None:
        """Advance the bar to ``step`` showing loss, lr and img/s (ETA comes from the bar)."""
        if self._bar is None:
            return
        dt = time.perf_counter() - self._t0
        ips = (step - self._s0) * self.batch / dt if dt > 0 else 0.0
        self._bar.set_postfix(
            loss=f"{metrics.get('loss', float('nan')):.4f}",
            lr=f"{metrics.get('lr', 0.0):.3g}",
            img_s=f"{ips:.0f}",
            refresh=False,
        )
        self._bar.update(step - self._bar.n)

    def reset_rate(self, step: int) -> None:
        """Restart the img/s clock (after compilation or evaluation pauses)."""
        self._t0, self._s0 = time.perf_counter(), step

    def write(self, text: str) -> None:
        if not self.active:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
