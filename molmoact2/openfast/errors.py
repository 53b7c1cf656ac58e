"""What goes wrong between ids and actions, said out loud.

The reference FAST decoder catches every exception, prints "Error decoding tokens" and returns an
all-zero DCT chunk. After un-normalisation that is a CONSTANT mid-range pose, which an absolute-joint
robot will drive to. Here a failed decode raises `DecodeError`, which carries one
`DecodeDiagnostics` per failed sequence: what was expected, what arrived, which ids were bad, where
decoding went off the rails, and a partial reconstruction when the received prefix allows one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class BadId:
    """One id that cannot be decoded, and where it sits in the sequence."""

    position: int
    token_id: object  # whatever arrived: an out-of-range int, a float, a string …
    reason: str


@dataclass(frozen=True)
class BadBytes:
    """Bytes that do not form valid UTF-8: each becomes U+FFFD, i.e. a garbage coefficient."""

    byte_offset: int
    token_position: int
    token_id: int


@dataclass
class DecodeDiagnostics:
    """Everything known about one sequence's decode, failed or not.

    Coefficient indices are frequency-major: coefficient `c` is frequency `c // action_dim` of
    action dimension `c % action_dim`.
    """

    sequence_index: int
    time_horizon: int
    action_dim: int
    num_ids: int
    expected_coefficients: int
    got_coefficients: int
    bad_ids: list[BadId] = field(default_factory=list)
    bad_bytes: list[BadBytes] = field(default_factory=list)
    # Decoded values outside the alphabet the tokenizer was trained on (min_token .. max_token).
    out_of_range: list[tuple[int, int]] = field(default_factory=list)
    # First token / coefficient where the decode stopped being trustworthy (None = never).
    diverged_at_token: int | None = None
    diverged_at_coefficient: int | None = None
    problems: list[str] = field(default_factory=list)
    # [T, D] reconstruction from the coefficients that did arrive (missing ones = 0), or None.
    partial_actions: np.ndarray | None = None
    # [T, D] bool: which DCT coefficients the partial reconstruction actually received.
    received_mask: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def complete_frequencies(self) -> int:
        """How many whole frequency rows (all dims) arrived intact before the first problem."""
        if self.received_mask is None:
            return 0
        return int(self.received_mask.all(axis=1).sum())

    def summary(self) -> str:
        head = (
            f"sequence {self.sequence_index}: expected {self.expected_coefficients} DCT coefficients "
            f"(time_horizon={self.time_horizon} x action_dim={self.action_dim}) from {self.num_ids} ids, "
            f"got {self.got_coefficients}"
        )
        lines = [head] + [f"  - {p}" for p in self.problems]
        if self.diverged_at_token is not None:
            lines.append(
                f"  - decoding diverged at token position {self.diverged_at_token}"
                + (f" (coefficient {self.diverged_at_coefficient})" if self.diverged_at_coefficient is not None else "")
            )
        if self.partial_actions is not None:
            lines.append(
                f"  - partial reconstruction available from {self.complete_frequencies} complete "
                f"frequency rows (missing coefficients set to 0, i.e. low-passed)"
            )
        return "\n".join(lines)


class DecodeError(ValueError):
    """Raised when ids cannot be turned into a [T, D] action chunk. Never replaced by zeros silently.

    `diagnostics` holds one entry per FAILED sequence; `partial` is [B, T, D] with the partial
    reconstruction of failed sequences (NaN where none exists) and the real decode of good ones.
    """

    def __init__(self, diagnostics: list[DecodeDiagnostics], partial: np.ndarray | None = None):
        self.diagnostics = diagnostics
        self.partial = partial
        n = len(diagnostics)
        body = "\n".join(d.summary() for d in diagnostics[:5])
        more = f"\n… and {n - 5} more failed sequences" if n > 5 else ""
        super().__init__(f"OpenFAST decode failed for {n} sequence(s):\n{body}{more}")


class EncodeRangeError(ValueError):
    """An action chunk produced DCT integers this tokenizer cannot represent.

    The reference encoder clips values below `min_token` to 0 and its BPE silently DROPS byte symbols
    missing from the vocabulary, so the ids decode to a different chunk or fail to decode at all.
    `positions` lists (sequence, coefficient, value) triples.
    """

    def __init__(self, message: str, positions: list[tuple[int, int, int]]):
        self.positions = positions
        super().__init__(message)
