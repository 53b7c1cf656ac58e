"""Every intermediate stage of one chunk's trip through FAST, for teaching and debugging.

    insp = inspect_chunk(processor, chunk_TD, normalizer)   # chunk in raw units if a normalizer is given
    insp.dct, insp.integers, insp.text, insp.pieces, insp.decoded, insp.per_joint, insp.comparison

Pieces map BPE tokens back to coefficients through BYTES, because that is where BPE works: a
coefficient whose character is >= U+0080 is two UTF-8 bytes, and a token may end between them
(`Piece.splits_coefficient`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from molmoact2.openfast import codec
from molmoact2.openfast.dct import dct_time
from molmoact2.openfast.metrics import BINNING_BINS, binning_roundtrip, relative_error_pct


@dataclass(frozen=True)
class Piece:
    position: int  # index in the id sequence
    token_id: int
    token: str  # the vocabulary entry (byte-level symbols)
    byte_start: int
    byte_end: int
    coef_start: int  # first coefficient (frequency-major flat index) this piece touches
    coef_end: int  # one past the last coefficient it touches
    splits_coefficient: bool  # starts or ends inside a multi-byte character

    @property
    def num_coefficients(self) -> int:
        return self.coef_end - self.coef_start


@dataclass(frozen=True)
class JointError:
    name: str
    mean_abs: float  # normalized units
    max_abs: float
    mean_rel_pct: float  # relative to the joint's 1-99 % range
    max_rel_pct: float
    mean_abs_raw: float | None  # the data's own units (e.g. degrees), when a normalizer is known
    max_abs_raw: float | None


@dataclass
class ChunkInspection:
    actions: np.ndarray  # [T, D] normalized input
    raw_actions: np.ndarray | None  # [T, D] in the data's units (when a normalizer was given)
    dct: np.ndarray  # [T, D] DCT-II ortho coefficients (row = frequency)
    scaled: np.ndarray  # [T, D] dct * scale, before rounding
    integers: np.ndarray  # [T, D] rounded
    flat_integers: np.ndarray  # [T*D] frequency-major
    code_points: np.ndarray  # [T*D] integers - min_token, clipped at 0
    text: str  # chr(code_points)
    ids: list[int]
    pieces: list[Piece]
    piece_of_coefficient: np.ndarray  # [T, D] index into `pieces` of the piece holding each coefficient's first byte
    decoded: np.ndarray  # [T, D] normalized
    decoded_raw: np.ndarray | None
    per_joint: list[JointError]
    comparison: list[dict]  # OpenFAST vs 256-bin binning vs raw float32
    scale: float
    min_token: int

    @property
    def time_horizon(self) -> int:
        return int(self.actions.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    @property
    def zero_fraction(self) -> float:
        return float((self.integers == 0).mean())

    def text_escaped(self, limit: int = 400) -> str:
        """The character string made printable: U+XXXX for each character (they are mostly control characters)."""
        shown = " ".join(f"U+{ord(c):04X}" for c in self.text[:limit])
        return shown + (" …" if len(self.text) > limit else "")


def coefficient_label(index: int, action_dim: int) -> str:
    return f"f{index // action_dim}·d{index % action_dim}"


def pieces_for(processor, ids: list[int], code_points: np.ndarray) -> tuple[list[Piece], np.ndarray]:
    """BPE pieces with the coefficient span each covers; plus, per coefficient, its piece index."""
    widths = np.array([len(chr(int(c)).encode("utf-8")) for c in code_points], dtype=np.int64)
    char_start = np.concatenate([[0], np.cumsum(widths)])  # byte offset where each character starts
    pieces, offset = [], 0
    for pos, token_id in enumerate(ids):
        nbytes = len(processor.vocab.token_bytes(token_id))
        bs, be = offset, offset + nbytes
        cs = int(np.searchsorted(char_start, bs, side="right")) - 1
        ce = int(np.searchsorted(char_start, be, side="left"))
        splits = bool(char_start[min(cs, len(char_start) - 1)] != bs or
                      (ce < len(char_start) and char_start[ce] != be) or be > char_start[-1])
        pieces.append(Piece(pos, int(token_id), processor.vocab.id_to_token[token_id] or "", bs, be, cs, ce, splits))
        offset = be
    owner = np.full(len(code_points), -1, dtype=np.int64)
    starts = np.array([p.byte_start for p in pieces], dtype=np.int64)
    if len(pieces):
        owner = np.searchsorted(starts, char_start[:-1], side="right") - 1
    return pieces, owner


def inspect_chunk(processor, chunk: np.ndarray, normalizer=None, *, names=None,
                  on_out_of_range: str = "raise") -> ChunkInspection:
    """Run one [T, D] chunk through every stage. With a normalizer, `chunk` is in raw units."""
    chunk = np.asarray(chunk)
    if chunk.ndim != 2:
        raise ValueError(f"inspect_chunk: expected one chunk [T, D], got shape {list(chunk.shape)}")
    raw = None
    if normalizer is not None:
        raw, chunk = chunk.astype(np.float64), normalizer.normalize(chunk)
    t, d = chunk.shape
    enc = processor.encode_detailed(chunk, on_out_of_range=on_out_of_range)
    ids = enc.ids[0]
    coeffs = dct_time(chunk)
    decoded = processor.decode([ids], t, d)[0]
    pieces, owner = pieces_for(processor, ids, enc.code_points[0])
    rel = relative_error_pct(decoded, chunk)
    err = np.abs(decoded - chunk)
    decoded_raw = None if normalizer is None else normalizer.unnormalize(decoded)
    names = list(names or (normalizer.names if normalizer is not None and normalizer.names else None)
                 or [f"dim{i}" for i in range(d)])
    per_joint = []
    for j in range(d):
        raw_err = None if raw is None else np.abs(decoded_raw[:, j] - np.clip(raw[:, j], normalizer.q01[j],
                                                                              normalizer.q99[j]))
        per_joint.append(JointError(names[j], float(err[:, j].mean()), float(err[:, j].max()),
                                    float(rel[:, j].mean()), float(rel[:, j].max()),
                                    None if raw_err is None else float(raw_err.mean()),
                                    None if raw_err is None else float(raw_err.max())))
    bits_per_id = math.ceil(math.log2(max(processor.vocab.size, 2)))
    binned = binning_roundtrip(chunk)
    comparison = [
        {"representation": "OpenFAST (DCT + BPE)", "tokens": len(ids), "bits": len(ids) * bits_per_id,
         "mean_rel_error_pct": float(rel.mean()), "tokens_vs_openfast": 1.0},
        {"representation": f"{BINNING_BINS}-bin per-dim binning", "tokens": t * d, "bits": t * d * 8,
         "mean_rel_error_pct": float(relative_error_pct(binned, chunk).mean()),
         "tokens_vs_openfast": t * d / max(len(ids), 1)},
        {"representation": "raw float32", "tokens": t * d, "bits": t * d * 32, "mean_rel_error_pct": 0.0,
         "tokens_vs_openfast": t * d / max(len(ids), 1)},
    ]
    return ChunkInspection(
        actions=chunk, raw_actions=raw, dct=coeffs, scaled=coeffs * processor.scale, integers=enc.integers[0],
        flat_integers=codec.flatten_frequency_major(enc.integers[0]), code_points=enc.code_points[0],
        text=codec.code_points_to_text(enc.code_points[0]), ids=ids, pieces=pieces,
        piece_of_coefficient=owner.reshape(t, d), decoded=decoded, decoded_raw=decoded_raw, per_joint=per_joint,
        comparison=comparison, scale=processor.scale, min_token=processor.min_token,
    )
