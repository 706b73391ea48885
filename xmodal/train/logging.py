"""Training logs: a CSV file, TensorBoard event files and a progress bar, all on rank 0 only."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

CSV_NAME = "log.csv"
TB_DIR = "tensorboard"


class RunLogger:
    """Writes ``<out_dir>/log.csv`` (one row per logged step) and TensorBoard scalars; a no-op off rank 0.

    On resume, rows logged after the checkpoint we resume from (by the run that was killed) are dropped, so the
    CSV reads as one uninterrupted run.
    """

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = out_dir / CSV_NAME
        self._fields: list[str] | None = None
        self._writer = None
        self._tb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh run replaces the old log
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed (pip install 'xmodal[scale]'): logging to CSV only", stacklevel=2)
            else:
                purge = None if resume_step is None else resume_step + 1
                self._tb = SummaryWriter(log_dir=str(out_dir / TB_DIR), purge_step=purge)

    def _truncate_after(self, step: int) -> None:
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            return
        self._fields = list(rows[0].keys())
        with open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields)
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["step"]) <= step)

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Append one row (the keys of the first row fix the CSV columns) and the same scalars to TensorBoard."""
        if not self.enabled:
            return
        row = {"step": step, **values}
        if self._fields is None:
            self._fields = list(row.keys())
        new_file = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, step)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Final evaluation metrics go to TensorBoard under ``eval/`` (the JSON result holds them too)."""
        if self.enabled and self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"eval/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def progress_bar(total: int, initial: int, enabled: bool, desc: str = "train"):
    """A tqdm bar on rank 0 (disabled elsewhere); ``update(n)`` and ``set_postfix`` as usual."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True)
