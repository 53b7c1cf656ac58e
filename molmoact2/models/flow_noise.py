"""The start-noise scale of a flow-matching action expert (a workbench extension; the real `predict_action` has
no such argument). Euler integrates from x0 = scale * N(0, I): 1 is what the expert was trained from, 0 its mean
(one deterministic plan per observation). Kept free of torch so configs can check it before anything loads."""

from __future__ import annotations

from typing import Any

# The expert was trained from N(0, I) only; scales above this are far outside anything it has seen.
MAX_NOISE_SCALE = 2.0


def check_noise_scale(noise_scale: Any) -> float:
    """The start-noise multiplier as a float in [0, MAX_NOISE_SCALE], or a ValueError naming the range."""
    try:
        value = float(noise_scale)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= MAX_NOISE_SCALE:  # also refuses NaN
        raise ValueError(f"noise_scale: expected a number in 0..{MAX_NOISE_SCALE} (1 = the trained start noise, "
                         f"0 = its mean), got {noise_scale!r}")
    return value
