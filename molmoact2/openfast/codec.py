"""FAST's lossless-after-rounding part: DCT coefficients <-> integers <-> one character per integer.

Steps (the reference order, which decides the exact ids):
  coefficients [T, D] --x scale, round half-to-even--> integers [T, D]
  --flatten C order (frequency-major: all dims of frequency 0, then 1, …)--> [T*D]
  --minus min_token, clip below at 0--> code points --chr--> a string of T*D characters.
The string then goes to byte-level BPE (`bpe.py`). Decoding reverses it: ord, plus min_token,
reshape [T, D], divide by scale, inverse DCT.
"""

from __future__ import annotations

import numpy as np

from molmoact2.openfast.dct import dct_time, idct_time


def quantize(coefficients: np.ndarray, scale: float) -> np.ndarray:
    """Scale and round (numpy `around`: half to even, 2.5 -> 2) to int64.

    `scale` must be a plain Python number: numpy 2 would promote a float32 array multiplied by an
    np.float64 scalar to float64, which can move a value across a rounding boundary and change ids.
    """
    coefficients = np.asarray(coefficients)
    if not np.all(np.isfinite(coefficients)):
        raise ValueError("quantize: DCT coefficients contain NaN or inf (check the action chunk for NaN/inf)")
    return np.around(coefficients * _py_number(scale)).astype(np.int64)


def dequantize(integers: np.ndarray, scale: float) -> np.ndarray:
    """Integers back to (rounded) DCT coefficients, float64 like the reference decoder."""
    return np.asarray(integers, dtype=np.int64) / _py_number(scale)


def flatten_frequency_major(integers: np.ndarray) -> np.ndarray:
    """[..., T, D] -> [..., T*D]; position t*D + d holds frequency t of dimension d."""
    integers = np.asarray(integers)
    return integers.reshape(*integers.shape[:-2], integers.shape[-2] * integers.shape[-1])


def to_code_points(flat_integers: np.ndarray, min_token: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift by `min_token` and clip below at 0 (the reference's only clip).

    Returns (code points, mask of positions that were clipped) so callers can refuse or flag it.
    """
    shifted = np.asarray(flat_integers, dtype=np.int64) - int(min_token)
    clipped = shifted < 0
    return np.maximum(shifted, 0), clipped


def code_points_to_text(code_points: np.ndarray) -> str:
    """chr() of every value (via UTF-32, which is chr() vectorized: one 4-byte unit per code point)."""
    cp = np.asarray(code_points, dtype=np.int64)
    if cp.size and (cp.min() < 0 or cp.max() > 0x10FFFF or ((cp >= 0xD800) & (cp <= 0xDFFF)).any()):
        return "".join(map(chr, cp.tolist()))  # let chr() raise / keep surrogates exactly as the reference would
    return cp.astype("<u4").tobytes().decode("utf-32-le")


def text_to_integers(text: str, min_token: int) -> np.ndarray:
    """ord() of every character, plus min_token."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4").astype(np.int64) + int(min_token)


def actions_to_integers(actions: np.ndarray, scale: float) -> np.ndarray:
    """[..., T, D] actions -> [..., T, D] quantized DCT integers."""
    return quantize(dct_time(actions), scale)


def integers_to_actions(integers: np.ndarray, scale: float) -> np.ndarray:
    """[..., T, D] quantized DCT integers -> [..., T, D] actions (float64)."""
    return idct_time(dequantize(integers, scale))


def _py_number(scale: float) -> float | int:
    if isinstance(scale, (bool, np.bool_)):
        raise ValueError(f"scale: expected a positive number, got {scale!r}")
    value = scale.item() if isinstance(scale, np.generic) else scale
    if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
    return value
