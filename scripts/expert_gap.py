"""How far a checkpoint's K-step plans land from a teacher's T-step plans, from the same start noise (open loop).

    .venv/bin/python scripts/expert_gap.py --teacher assets/nano --checkpoint /tmp/nano_2step --steps 2 \
        --data /tmp/nano_heldout
    # one row per checkpoint and step count: the end-point MSE in model space (actions normalized to [-1, 1])

The measure `train distill-expert` minimizes, read on frames it did not train on (a held-out cache): contexts
from the frames' robot prompts (a --depth-share of them with their depth codes, as in Think mode), the same
start noise for both, the mean over the robot's action dims of (student end point - teacher end point)^2. With
--checkpoint equal to the teacher it says what taking fewer steps costs without distillation. Fixed frames and
noise (--seed), so rows of one run compare the same plans.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="assets/nano")
    ap.add_argument("--teacher-steps", type=int, default=5)
    ap.add_argument("--checkpoint", nargs="+", required=True, help="checkpoints to measure (the teacher too, for "
                                                                     "the cost of fewer steps without distillation)")
    ap.add_argument("--steps", nargs="+", type=int, required=True, help="Euler steps per --checkpoint, in order")
    ap.add_argument("--data", nargs="+", required=True, help="demo caches whose frames give the contexts (held out)")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--depth-share", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=999)
    a = ap.parse_args(argv)
    if len(a.steps) != len(a.checkpoint):
        ap.error(f"--steps: expected one step count per --checkpoint ({len(a.checkpoint)}), got {len(a.steps)}")

    import torch

    torch.set_num_threads(1)
    from molmoact2.models.nano.normalization import stats_dim
    from molmoact2.training.expert_distill import distill_loss, sample_contexts
    from molmoact2.training.nano_examples import NanoTrainData
    from molmoact2.training.nano_trainer import load_weights

    teacher, processor = load_weights(a.teacher)
    data = NanoTrainData.load(a.data, progress=False)
    dim_mask = torch.zeros(teacher.config.max_action_dim)
    dim_mask[:stats_dim(data.norm_stats["metadata_by_tag"][data.tag]["action_stats"], "action")] = 1.0
    horizon = int(teacher.config.max_action_horizon)
    # The contexts depend only on the language model, which distillation leaves alone: build them once.
    batches = []
    for b in range(a.batches):
        contexts, mask = sample_contexts(teacher, processor, data, np.random.default_rng([a.seed, b]), a.batch_size,
                                         a.depth_share)
        x0 = torch.randn((a.batch_size, horizon, teacher.config.max_action_dim),
                         generator=torch.Generator().manual_seed(a.seed + b)) * dim_mask
        batches.append((contexts, mask, x0))
    print(f"teacher {a.teacher} at {a.teacher_steps} Euler steps; {a.batches} x {a.batch_size} frames of "
          f"{', '.join(a.data)}\n")
    print("| checkpoint | Euler steps | end-point MSE vs the teacher (model space) |\n|---|---|---|")
    for path, steps in zip(a.checkpoint, a.steps):
        student, _ = load_weights(path)
        with torch.no_grad():
            gaps = [float(distill_loss(student.action_expert, teacher.action_expert, c, m, x0, dim_mask, steps,
                                       a.teacher_steps)[0]) for c, m, x0 in batches]
        print(f"| {path} | {steps} | {np.mean(gaps):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
