"""The first frame of simulator layouts, with Nano's continuous call on it: what the probe scripts read.

`scripts/probe_token_position.py` and `scripts/probe_expert_attention.py` both need, per task and seed, the
observation at reset and one `predict_action(..., return_context=True)` on it, with the cameras in the checkpoint's
order and the flow noise seeded by the layout seed (so a rerun sees the same chunk). With `swap_targets=True` each
layout is also asked about every other object the task could be about (`SimEnv.reset(seed, options={"target": ...})`:
the same picture, only the object's words change), which is how a probe tells reading the words from reading the
picture.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

EVAL_RENDER_SIZE = 224  # what `molmoact2 eval nano` renders


def first_frames(model: Any, processor: Any, norm_tag: str, tasks: Sequence[str], seeds: Sequence[int], *,
                 segmentation: bool = False, swap_targets: bool = False,
                 desc: str = "layouts") -> Iterator[tuple[Any, int, Any, list[str], dict]]:
    """Yields (env, seed, obs, camera order, predict_action output) per task and seed, with a progress bar. `env` is
    still open while its item is in hand (`env.instance.target` is the object the instruction names); it closes after
    its last seed. With `swap_targets`, each seed's first item is its own instruction and one item follows per other
    candidate object of that layout (layouts with a single candidate yield only the first)."""
    import torch
    from tqdm.auto import tqdm

    from molmoact2.models.hf import order_cameras
    from molmoact2.sim import make_env

    meta = model.norm_stats["metadata_by_tag"][norm_tag]
    bar = tqdm(total=len(tasks) * len(seeds), desc=desc, unit="layout", file=sys.stderr)
    try:
        for task in tasks:
            env = make_env(task, image_size=EVAL_RENDER_SIZE, depth=False, segmentation=segmentation)
            try:
                for seed in seeds:
                    obs, _ = env.reset(seed=seed)
                    own = env.instance.target
                    others = [t for t in env.target_options() if t != own] if swap_targets else []
                    for target in [own, *others]:
                        if target != own:
                            obs, _ = env.reset(seed=seed, options={"target": target})
                        order, _ = order_cameras(obs, meta.get("camera_keys"), norm_tag)
                        with torch.inference_mode():
                            out = model.predict_action(
                                processor=processor, images=[obs.cameras[name].rgb for name in order],
                                task=obs.instruction, state=np.asarray(obs.state), norm_tag=norm_tag,
                                inference_action_mode="continuous", return_context=True,
                                generator=torch.Generator().manual_seed(seed))
                        yield env, seed, obs, order, out
                    bar.update()
            finally:
                env.close()
    finally:
        bar.close()
