"""A model's own MolmoThink trace, live: run a policy with depth reasoning in the simulator and keep its Steps.

    steps = policy_think_steps("nano", task="pick_place", seed=10001, n_chunks=12)
    session = molmoact2.depth.session.from_steps(steps, codec)   # the model's depth_bins + update masks

The Think debugger's other sources show what MolmoThink WOULD re-predict (masks from the images, codes
from the VQ-VAE of the true depth); this one shows what a model DID predict, so the two can be compared
cell by cell. Runtime layer: it drives a policy (models) in a world (sim) through the safety guard.
"""

from __future__ import annotations

from typing import Any

from molmoact2.models.base import Step


def policy_think_steps(spec: str = "nano", task: str = "pick_place", seed: int = 0, n_chunks: int = 12,
                       image_size: int = 224, policy: Any = None) -> list[Step]:
    """Up to `n_chunks` Steps (one per policy call) of `spec` with depth reasoning, in closed loop.
    Joint targets past the limits are clipped by the guard (and recorded in each Step's info)."""
    from molmoact2.models.registry import load_policy
    from molmoact2.runner import guard_for_env, run_episode
    from molmoact2.sim import make_env

    if n_chunks < 1:
        raise ValueError(f"n_chunks: expected >= 1 policy calls, got {n_chunks}")
    policy = policy if policy is not None else load_policy(spec, depth_reasoning=True, seed=0)
    env = make_env(task, image_size=image_size, depth=True, segmentation=False)
    steps: list[Step] = []
    try:
        for step in run_episode(policy, env, guard_for_env(env, on_limit="clip"), seed=seed,
                                observe_every_tick=False):
            if step.depth_bins is None or step.depth_update_mask is None:
                raise ValueError(f"policy_think_steps: {getattr(policy, 'name', spec)!r} returned no depth_bins / "
                                 f"depth_update_mask: it is not running with depth reasoning")
            steps.append(step)
            if len(steps) >= n_chunks:
                break
    finally:
        env.close()
    return steps
