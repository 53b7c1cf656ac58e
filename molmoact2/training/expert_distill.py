"""Distil Nano's flow expert into fewer Euler steps (`molmoact2 train distill-expert`).

    molmoact2 train distill-expert --teacher assets/nano --data /tmp/nano_data --out /tmp/nano_2step \\
        --student-steps 2 --steps 600

Why: a continuous call is vision + prefill + the expert's Euler steps, and the steps are the largest stage (five
steps x six blocks). Running the shipped weights with fewer steps costs success (README, "Five Euler steps"),
because a learned velocity field is curved and a coarse Euler walk leaves it. Distillation teaches the expert to
land, in K steps, where the teacher's own integration lands from the SAME start noise:

    x0 ~ N(0, I) (padded action dims zeroed)   teacher: x_T = Euler(teacher expert, x0, T steps)     (no grad)
    student: x_K = Euler(student expert, x0, K steps), differentiated through all K steps
    loss = mean over the real action dims of (x_K - x_T)^2

The map noise -> plan stays the teacher's, so the plans keep their spread (the flow noise is part of the policy:
docs/nano_experiments.md#noise-scale). Only the action expert trains; the vision tower and the language model are
the teacher's, bit for bit, so every answer, depth code and OpenFAST decode is unchanged. The contexts are those the
expert reads at inference: the robot prompt (and in Think mode the prompt plus the carried-forward depth codes) of
demo frames drawn uniformly from the data caches. The output is a whole checkpoint (the real layout, fp16) whose
config says `flow_matching_num_steps = K`; `training_args.json` nests the teacher's provenance under `init_from`.

Resumable like `train nano`: the batch and noise of step k come from (seed, k); the student's fp32 weights and
AdamW state are saved every --save-every steps in DIR/train_state; `--resume` continues from there (the teacher
is re-read from --teacher).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DistillConfig:
    teacher: str = "assets/nano"
    teacher_steps: int = 5  # the shipped Nano's flow_matching_num_steps
    student_steps: int = 2
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-4
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0  # the student starts AT the teacher; decay would only pull it away
    depth_share: float = 0.3  # share of contexts with depth codes (Think mode's prompt); the rest plain robot prompts
    seed: int = 0
    save_every: int = 100
    threads: int = 2

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to min_lr_ratio * lr (as `train nano`)."""
        from molmoact2.training.nano_trainer import warmup_cosine_lr

        return warmup_cosine_lr(step, self.lr, self.warmup_steps, self.steps, self.min_lr_ratio)

    def check(self) -> None:
        if self.teacher_steps < 1 or self.student_steps < 1:
            raise ValueError(f"teacher_steps / student_steps: expected >= 1 Euler steps, got {self.teacher_steps} / "
                             f"{self.student_steps}")
        if self.student_steps >= self.teacher_steps:
            raise ValueError(f"student_steps ({self.student_steps}) must be fewer than teacher_steps "
                             f"({self.teacher_steps}): distillation is for taking fewer steps")
        if not 0.0 <= self.depth_share <= 1.0:
            raise ValueError(f"depth_share: expected a share 0..1, got {self.depth_share}")
        if self.steps < 1 or self.batch_size < 1 or self.save_every < 1:
            raise ValueError(f"steps, batch_size, save_every: expected >= 1, got {self.steps}, {self.batch_size}, "
                             f"{self.save_every}")


def _noise_generator(seed: int, step: int):
    import torch

    return torch.Generator().manual_seed(int(np.random.default_rng([seed, step, 2]).integers(2**62)))


def sample_contexts(model, processor, data, rng: np.random.Generator, batch_size: int, depth_share: float):
    """(per-layer contexts, context mask) of `batch_size` demo frames drawn uniformly, as the expert reads them at
    inference: a forward pass over each frame's robot prompt (plus its depth codes for a depth-style frame)."""
    import torch

    from molmoact2.models.nano.train_step import build_example, collate

    picks = data.index[rng.integers(len(data.index), size=batch_size)]
    styles = np.where(rng.random(batch_size) < depth_share, "depth_action", "action")
    examples = [build_example(model, processor, **data.frame_inputs(str(s), int(e), int(f)))
                for s, (e, f) in zip(styles, picks)]
    batch = collate(examples, processor)
    cache = model.new_cache()
    with torch.no_grad():
        model.forward(batch["input_ids"], batch["attention_mask"], batch.get("pixel_values"), cache=cache,
                      logits_to_keep=1)
    contexts = [cache.context(layer) for layer in range(model.config.text_config.num_hidden_layers)]
    return contexts, batch["attention_mask"].bool() & ~batch["hide_from_expert"]


def distill_loss(student, teacher, contexts, ctx_mask, x0, dim_mask, student_steps: int, teacher_steps: int):
    """Mean squared distance, over the real action dims, between the student's K-step Euler end point and the
    teacher's T-step one from the same start `x0` [B, H, 32]. Returns (loss, teacher end point)."""
    import torch

    from molmoact2.models.nano.action_expert import euler_integrate

    target = euler_integrate(teacher, x0, contexts, ctx_mask, teacher_steps, dim_mask)[-1]
    projected = student.project_contexts(contexts)
    x = x0
    for i in range(student_steps):  # `euler_integrate_reference`'s steps, with gradients
        t = torch.full((x.shape[0],), i / student_steps, dtype=x.dtype)
        x = x + student(x, t, projected, ctx_mask) * dim_mask / student_steps
    err = (x - target) ** 2 * dim_mask
    return err.sum() / (dim_mask.sum() * x.shape[0] * x.shape[1]), target


def distill(data_dir, out: str | os.PathLike, cfg: DistillConfig, *, resume: bool = False, progress: bool = True,
            argv: list[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the distillation; returns steps run, seconds per step, the first and last losses."""
    import torch

    from molmoact2.models.nano.modeling_nano import NanoForConditionalGeneration
    from molmoact2.models.nano.normalization import stats_dim
    from molmoact2.models.nano.processing_nano import NanoProcessor
    from molmoact2.training.nano_examples import NanoTrainData
    from molmoact2.training.nano_trainer import (STATE_DIR, _normalization, export_checkpoint, init_provenance,
                                                 load_weights, save_train_state)

    cfg.check()
    out = Path(out)
    state_dir = out / STATE_DIR
    torch.set_num_threads(int(cfg.threads))
    if progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    teacher_model, processor = load_weights(cfg.teacher)
    own = int(teacher_model.config.flow_matching_num_steps)
    if own != cfg.teacher_steps:
        print(f"note: the teacher {cfg.teacher} runs {own} Euler steps by default; distilling from "
              f"{cfg.teacher_steps} as asked", file=sys.stderr)
    teacher = teacher_model.action_expert.eval().requires_grad_(False)
    start = 0
    if resume:
        if not (state_dir / "state.json").is_file():
            raise FileNotFoundError(f"--resume: no saved state in {state_dir} (start without --resume)")
        saved = json.loads((state_dir / "state.json").read_text())
        fixed = {k: v for k, v in saved["config"].items() if k not in ("steps", "save_every", "threads")}
        now = {k: v for k, v in asdict(cfg).items() if k not in ("steps", "save_every", "threads")}
        diff = {k: (fixed.get(k), now[k]) for k in now if fixed.get(k) != now[k]}
        if diff:
            raise ValueError(f"--resume: the options differ from the saved run in {state_dir} (saved, now): {diff}")
        start = int(saved["step"])
        if start >= cfg.steps:
            raise ValueError(f"--resume: the saved run is already at step {start}; ask for --steps > {start}")
        model = NanoForConditionalGeneration.from_pretrained(str(state_dir / "model"))
        processor = NanoProcessor.from_pretrained(state_dir / "model")
    else:
        if (out / "config.json").exists() or state_dir.exists():
            raise FileExistsError(f"{out} already holds a checkpoint; pass --resume to continue it or choose a new --out")
        model = copy.deepcopy(teacher_model)
    data = NanoTrainData.load(data_dir, action_tokenizer=None, progress=progress)
    if not len(data.index):
        raise ValueError(f"{data_dir}: no demo frames (question scenes only); list a demo cache from "
                         f"`molmoact2 train data`: the contexts are demo frames")
    if _normalization(model.norm_stats) != _normalization(data.norm_stats):
        raise ValueError(f"{data_dir}: its norm stats differ from the teacher's ({cfg.teacher}); the prompts' state "
                         f"bins would differ from what the teacher was trained on. Use the teacher's data caches")
    model.eval().requires_grad_(False)
    student = model.action_expert
    student.requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    if start:
        optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
    # The robot's action dims; the padded ones are zeroed in the noise and the velocity, as at inference.
    action_stats = model.norm_stats["metadata_by_tag"][data.tag]["action_stats"]
    dim_mask = torch.zeros(model.config.max_action_dim)
    dim_mask[:stats_dim(action_stats, "action")] = 1.0
    horizon = int(model.config.max_action_horizon)
    out.mkdir(parents=True, exist_ok=True)
    args_path = out / "training_args.json"
    if not start:
        args_path.write_text(json.dumps({
            "kind": "expert distillation (molmoact2.training.expert_distill)", "config": asdict(cfg), "argv": argv,
            "data": [str(d) for d in data.roots], "data_frames": int(len(data.index)),
            "init_from": init_provenance(cfg.teacher)}, indent=1))
    else:
        args = json.loads(args_path.read_text()) if args_path.is_file() else {}
        args.setdefault("resumes", []).append({"from_step": start, "steps": cfg.steps, "argv": argv})
        args_path.write_text(json.dumps(args, indent=1))

    from tqdm.auto import tqdm

    log = open(out / "train_log.jsonl", "a")
    bar = tqdm(total=cfg.steps, initial=start, desc=f"distil {cfg.teacher_steps}->{cfg.student_steps} steps",
               unit="step", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    first = last = None
    t_run = time.perf_counter()
    try:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            lr = cfg.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rng = np.random.default_rng([cfg.seed, step])
            contexts, ctx_mask = sample_contexts(model, processor, data, rng, cfg.batch_size, cfg.depth_share)
            x0 = torch.randn((cfg.batch_size, horizon, model.config.max_action_dim),
                             generator=_noise_generator(cfg.seed, step)) * dim_mask
            student.train()
            loss, _ = distill_loss(student, teacher, contexts, ctx_mask, x0, dim_mask, cfg.student_steps,
                                   cfg.teacher_steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            student.eval()
            record = {"step": step + 1, "lr": lr, "distill_loss": float(loss.detach()),
                      "seconds": round(time.perf_counter() - t0, 3)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            first = first or record
            last = record
            bar.set_postfix_str(f"loss={record['distill_loss']:.4f}", refresh=False)
            bar.update(1)
            done = step + 1
            if done % cfg.save_every == 0 or done == cfg.steps:
                model.config.flow_matching_num_steps = int(cfg.student_steps)
                save_train_state(out, model, processor, optimizer, done, cfg)
                export_checkpoint(out, model, processor)
    finally:
        bar.close()
        log.close()
    seconds = time.perf_counter() - t_run
    return {"steps_run": cfg.steps - start, "seconds_per_step": seconds / max(1, cfg.steps - start),
            "first": first, "final": last}
