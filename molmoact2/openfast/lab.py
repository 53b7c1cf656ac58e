"""The decode-failure lab: corrupt an id sequence, decode it, and compare what each policy does.

Shows side by side, for the same corrupted ids:
* our default: `DecodeError` with diagnostics (and a partial low-pass reconstruction when possible);
* the reference fallback (`on_error="zeros"`): an all-zero DCT chunk = 0 in normalized space, which an
  absolute-joint robot receives as the MIDPOINT of every joint's range — held for the whole chunk;
* LeRobot pi0-FAST's relaxed decode (truncate / zero-pad the coefficients).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from molmoact2.openfast.errors import DecodeDiagnostics, DecodeError

EDIT_OPS = ("drop", "insert", "edit")


def apply_edit(ids: list[int], op: str, position: int, new_id: int | None = None) -> list[int]:
    """Return a corrupted copy of `ids`: drop the id at `position`, insert `new_id` before it, or replace it."""
    ids = list(ids)
    if op not in EDIT_OPS:
        raise ValueError(f"apply_edit: op must be one of {EDIT_OPS}, got {op!r}")
    limit = len(ids) if op == "insert" else len(ids) - 1
    if not 0 <= position <= limit:
        raise ValueError(f"apply_edit: position must be in [0, {limit}] for {op!r} on {len(ids)} ids, got {position}")
    if op == "drop":
        del ids[position]
    else:
        if new_id is None:
            raise ValueError(f"apply_edit: {op!r} needs a new id")
        if op == "insert":
            ids.insert(position, new_id)
        else:
            ids[position] = new_id
    return ids


def parse_edit(spec: str) -> tuple[str, int, int | None]:
    """'drop:3' | 'insert:3:517' | 'edit:3:517' -> (op, position, new_id)."""
    parts = spec.split(":")
    try:
        if parts[0] == "drop" and len(parts) == 2:
            return "drop", int(parts[1]), None
        if parts[0] in ("insert", "edit") and len(parts) == 3:
            return parts[0], int(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise ValueError(f"expected an edit like 'drop:3', 'insert:3:517' or 'edit:3:517', got {spec!r}")


@dataclass
class FailureReport:
    ids: list[int]
    decoded_ok: bool
    actions: np.ndarray | None  # [T, D] normalized, when the corrupted ids still decode
    diagnostics: DecodeDiagnostics | None
    error_text: str
    zeros_actions: np.ndarray  # [T, D] what on_error="zeros" returns (normalized: all 0)
    relaxed_actions: np.ndarray  # [T, D] what LeRobot's relaxed decode returns
    # In the data's own units when a normalizer is given (else normalized units):
    truth: np.ndarray  # [T, D]
    zeros_units: np.ndarray
    relaxed_units: np.ndarray
    partial_units: np.ndarray | None
    decoded_units: np.ndarray | None

    def max_deviation(self, which: str) -> np.ndarray:
        """Per-joint max |which - truth| over the chunk, in the reported units."""
        arr = {"zeros": self.zeros_units, "relaxed": self.relaxed_units, "partial": self.partial_units,
               "decoded": self.decoded_units}[which]
        if arr is None:
            return np.full(self.truth.shape[1], np.nan)
        return np.abs(arr - self.truth).max(axis=0)


def failure_report(processor, ids: list[int], truth_normalized: np.ndarray, normalizer=None) -> FailureReport:
    t, d = np.asarray(truth_normalized).shape
    to_units = (lambda a: a) if normalizer is None else normalizer.unnormalize
    try:
        actions = processor.decode([ids], t, d)[0]
        ok, diag, text = True, None, "decoded without error (the ids are valid for this tokenizer)"
    except DecodeError as e:
        actions, ok, diag, text = None, False, e.diagnostics[0], str(e)
    # The fallbacks are computed on purpose here, for comparison: silence their "fallback used" warning.
    proc_log = logging.getLogger("molmoact2.openfast.processor")
    level = proc_log.level
    proc_log.setLevel(logging.ERROR)
    try:
        zeros = processor.decode([ids], t, d, on_error="zeros").actions[0]
        relaxed = processor.decode([ids], t, d, on_error="relaxed").actions[0]
    finally:
        proc_log.setLevel(level)
    partial = None if diag is None or diag.partial_actions is None else to_units(diag.partial_actions)
    return FailureReport(
        ids=list(ids), decoded_ok=ok, actions=actions, diagnostics=diag, error_text=text,
        zeros_actions=zeros, relaxed_actions=relaxed, truth=to_units(np.asarray(truth_normalized)),
        zeros_units=to_units(zeros), relaxed_units=to_units(relaxed), partial_units=partial,
        decoded_units=None if actions is None else to_units(actions),
    )
