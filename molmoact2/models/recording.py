"""A recording: an ordered directory of saved `Step`s that outlives the process that made it.

Layout::

    my_run/
      recording.json          index: format, one summary row per step (dir, index, timestamp_s, backend)
      step_000000/step.json   Step.save output
      step_000000/arrays.npz
      step_000001/...

The index is rewritten atomically (`.partial` then `os.replace`) after each step directory is
complete, so a crash mid-append leaves a readable recording of the steps before it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from molmoact2.models.base import Step

RECORDING_FORMAT = "molmoact2_workbench_recording.v1"
INDEX_NAME = "recording.json"


class Recording:
    """Append `Step`s to a directory and read them back lazily, in order.

    `Recording(path)` opens an existing recording or starts an empty one (the directory is created
    on the first append). `meta` is free JSON-able metadata (e.g. robot, task, camera names).
    """

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX_NAME
        if index_path.is_file():
            doc = json.loads(index_path.read_text())
            if doc.get("format") != RECORDING_FORMAT:
                raise ValueError(
                    f"Recording: expected format {RECORDING_FORMAT!r} in {index_path}, got {doc.get('format')!r}"
                )
            self._rows: list[dict[str, Any]] = list(doc["steps"])
            self.meta: dict[str, Any] = dict(doc.get("meta", {}))
            if meta:
                self.meta.update(meta)
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise FileNotFoundError(
                    f"Recording: {self.path} is a non-empty directory without {INDEX_NAME}; "
                    "expected an existing recording or an empty/new directory"
                )
            self._rows = []
            self.meta = dict(meta or {})

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Recording":
        """Open an existing recording; unlike the constructor, a missing index is an error."""
        index_path = Path(path) / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"Recording.open: expected {index_path} (written by Recording.append), not found")
        return cls(path)

    @classmethod
    def from_steps(cls, path: str | os.PathLike, steps: Iterable[Step], meta: dict[str, Any] | None = None) -> "Recording":
        rec = cls(path, meta=meta)
        for step in steps:
            rec.append(step)
        return rec

    # ---- writing ---------------------------------------------------------------------------
    def append(self, step: Step) -> Path:
        """Save `step` as the next `step_NNNNNN/` directory and update the index. Returns the step directory."""
        if not isinstance(step, Step):
            raise TypeError(f"Recording.append: expected a Step, got {type(step).__name__}")
        name = f"step_{len(self._rows):06d}"
        step.save(self.path / name)
        self._rows.append(
            {"dir": name, "index": int(step.index), "timestamp_s": float(step.timestamp_s), "backend": step.backend}
        )
        self._write_index()
        return self.path / name

    def _write_index(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        doc = {"format": RECORDING_FORMAT, "meta": self.meta, "steps": self._rows}
        tmp = self.path / (INDEX_NAME + ".partial")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.path / INDEX_NAME)

    # ---- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Per-step summaries from the index (cheap: no arrays are read)."""
        return [dict(r) for r in self._rows]

    def load(self, i: int) -> Step:
        n = len(self._rows)
        if not -n <= i < n:
            raise IndexError(f"Recording.load: expected a step index in [0, {n}), got {i} ({self.path})")
        return Step.load(self.path / self._rows[i]["dir"])

    __getitem__ = load

    def __iter__(self) -> Iterator[Step]:
        # Lazy: one Step in memory at a time, so long recordings iterate in constant memory.
        for i in range(len(self._rows)):
            yield self.load(i)

    def __repr__(self) -> str:
        return f"Recording({str(self.path)!r}, steps={len(self)})"
