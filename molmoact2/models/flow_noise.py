"""How a flow-matching action expert's start noise is used (workbench extensions; the real `predict_action` has
neither). The scale: Euler integrates from x0 = scale * N(0, I); 1 is what the expert was trained from, 0 its mean
(one deterministic plan per observation). Plan samples: integrate K start draws at once and keep the medoid plan,
the one nearest all the others, so a lone draw of a rare mode (say, toward the wrong side) is outvoted while the
kept plan is still one the expert really drew (a mean of plans could lie between two modes, on no path at all).
Measured on Nano, keeping the medoid of 8 lowers success by 7 points (docs/nano_experiments.md#plan-samples): the
option is for experiments, the default stays one draw. The choice needs numpy only; the checks stay free of torch
so configs can use them before anything loads."""

from __future__ import annotations

from typing import Any

import numpy as np

# The expert was trained from N(0, I) only; scales above this are far outside anything it has seen.
MAX_NOISE_SCALE = 2.0
# Each sample is one more row through the expert's batch; past a few dozen the call is mostly waiting.
MAX_PLAN_SAMPLES = 64


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


def check_plan_samples(plan_samples: Any) -> int:
    """The number of start draws per call as an int in [1, MAX_PLAN_SAMPLES], or a ValueError naming the range."""
    if isinstance(plan_samples, bool) or not isinstance(plan_samples, (int, np.integer)) \
            or not 1 <= plan_samples <= MAX_PLAN_SAMPLES:
        raise ValueError(f"plan_samples: expected a whole number in 1..{MAX_PLAN_SAMPLES} (1 = one draw, as the "
                         f"real model), got {plan_samples!r}")
    return int(plan_samples)


def medoid_index(plans: np.ndarray) -> int:
    """Index of the plan [K, ...] with the least summed Euclidean distance to all the others (the first on ties);
    a non-finite plan is never chosen while a finite one exists."""
    if len(plans) < 1:
        raise ValueError("medoid_index: expected at least one plan")
    flat = np.asarray(plans, dtype=np.float64).reshape(len(plans), -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.any():
        raise ValueError("medoid_index: every plan has a non-finite value")
    ok = flat[finite]
    dist = np.sqrt(((ok[:, None, :] - ok[None, :, :]) ** 2).sum(-1)).sum(1)
    return int(np.flatnonzero(finite)[int(np.argmin(dist))])
