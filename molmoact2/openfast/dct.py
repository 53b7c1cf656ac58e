"""The transform FAST uses: an orthonormal DCT-II over TIME, one column per action dimension.

Why a DCT: a smooth 1-second joint trajectory puts almost all its energy in the first few
frequencies, so after scaling and rounding most coefficients are exactly 0 — long runs that BPE
then merges into a handful of tokens. `norm="ortho"` makes the transform an isometry, so a rounding
error of e in coefficient space is an error of e (RMS) in action space.

Dtype is left to scipy on purpose: float32 input stays float32, exactly as in the reference
processors, because that is what decides which values round up or down.
"""

from __future__ import annotations

import numpy as np

TIME_AXIS = -2  # arrays are [..., T, D]


def _check(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim < 2:
        raise ValueError(f"{what}: expected [..., T, D] (time, action dim), got shape {list(values.shape)}")
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{what}: expected real numbers, got dtype {values.dtype}")
    return values


def dct_time(actions: np.ndarray) -> np.ndarray:
    """DCT-II (orthonormal) of `actions` [..., T, D] along T. Row k of the result is frequency k."""
    from scipy.fft import dct

    return dct(_check(actions, "dct_time"), type=2, axis=TIME_AXIS, norm="ortho")


def idct_time(coefficients: np.ndarray) -> np.ndarray:
    """Inverse of `dct_time` (a DCT-III, orthonormal) along T."""
    from scipy.fft import idct

    return idct(_check(coefficients, "idct_time"), type=2, axis=TIME_AXIS, norm="ortho")
