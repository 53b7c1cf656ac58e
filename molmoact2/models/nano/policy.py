"""`NanoPolicy`: Nano as a workbench `Policy` (Observation -> Step), and `load_nano` for the registry.

    policy = load_nano("/tmp/nano_random", depth_reasoning=True, seed=0)
    step = policy.predict(obs)     # actions + depth codes + update mask + denoising states + timings
    step = policy.ask([image], "Point to the red cube")

The model is driven through its `predict_action(...)` with the official keyword arguments, exactly
as `HFCheckpointPolicy` drives a real checkpoint; this class only adds what `Step` records.

`carry_steps=k` (continuous mode; a workbench extension) pins each new chunk's first k actions to the
previous plan's actions for those ticks, so consecutive chunks continue one another instead of each drawing
its own mode (`action_expert` "Carry-over"). It assumes the previous chunk was executed: when the arm is
farther than `CARRY_MAX_GAP` of a joint's range from where that chunk ended, the carry is dropped and the
Step says so (`info["carry"]`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from molmoact2.models.base import Observation, Step

DEFAULT_PATH = Path(__file__).resolve().parents[3] / "assets" / "nano"
BUILD_HINT = "python -m molmoact2.models.nano.factory --out /tmp/nano_random"
# Carry-over is dropped when an arm joint is farther than this fraction of its 1-99% (else min-max) action
# range from where the previous chunk ended: that chunk was not (fully) executed, so its plan no longer applies.
# Measured on the shipped Nano in pick_place: an executed chunk leaves the arm 0.3-9% away.
CARRY_MAX_GAP = 0.15


class NanoPolicy:
    def __init__(self, model: Any, processor: Any, *, norm_tag: str | None = None, mode: str = "continuous",
                 depth_reasoning: bool = False, action_tokenizer: Any = None, num_steps: int | None = None,
                 n_action_steps: int | None = None, seed: int | None = None, checkpoint_dir: str | None = None,
                 carry_steps: int = 0, noise_scale: float = 1.0, plan_samples: int = 1,
                 constrain_action_tokens: bool = False, compiled: bool = False) -> None:
        from molmoact2.models.hf import load_action_tokenizer
        from molmoact2.models.flow_noise import check_noise_scale, check_plan_samples

        if mode not in ("continuous", "discrete"):
            raise ValueError(f"mode must be 'continuous' or 'discrete', got {mode!r}")
        if mode == "discrete" and action_tokenizer is None:
            raise ValueError("discrete mode needs action_tokenizer= (an OpenFAST tokenizer directory or object)")
        if depth_reasoning and not model.config.enable_depth_reasoning:
            raise ValueError("depth_reasoning=True but this Nano checkpoint was not trained for depth reasoning "
                             "(config.enable_depth_reasoning is False)")
        self.model, self.processor = model.eval(), processor
        tags = sorted(model.norm_stats["metadata_by_tag"])
        if norm_tag is None:
            if len(tags) != 1:
                raise ValueError(f"this Nano checkpoint has {len(tags)} norm tags; choose one with norm_tag=: {tags}")
            norm_tag = tags[0]
        if norm_tag not in tags:
            raise ValueError(f"unknown norm_tag {norm_tag!r}. Valid tags: {', '.join(tags)}")
        self.norm_tag, self.mode, self.depth_reasoning = norm_tag, mode, depth_reasoning
        self.meta = model.norm_stats["metadata_by_tag"][norm_tag]
        self.action_tokenizer = load_action_tokenizer(action_tokenizer)
        self.num_steps, self.n_action_steps, self.seed = num_steps, n_action_steps, seed
        self.checkpoint_dir = checkpoint_dir
        if int(carry_steps) != carry_steps or carry_steps < 0:
            raise ValueError(f"carry_steps: expected a whole number >= 0 (0 = off), got {carry_steps!r}")
        if carry_steps and mode != "continuous":
            raise ValueError("carry_steps: only the continuous (flow-matching) mode can carry a plan over")
        self.carry_steps = int(carry_steps)
        self.noise_scale = check_noise_scale(noise_scale)
        if self.noise_scale != 1.0 and mode != "continuous":
            raise ValueError("noise_scale: only the continuous (flow-matching) mode starts from noise")
        self.plan_samples = check_plan_samples(plan_samples)
        if self.plan_samples != 1 and mode != "continuous":
            raise ValueError("plan_samples: only the continuous (flow-matching) mode draws plans")
        if constrain_action_tokens and mode != "discrete":
            raise ValueError("constrain_action_tokens: only the discrete (OpenFAST) mode decodes action ids")
        self.constrain_action_tokens = bool(constrain_action_tokens)
        if compiled:  # vision, prefill and expert through torch.compile (nano/compiled.py); first calls compile
            from molmoact2.models.nano.compiled import enable_compiled_inference

            enable_compiled_inference(model)
        self.compiled = bool(compiled)
        self.dtype = str(model.dtype).removeprefix("torch.")  # reported by `molmoact2 serve`'s health JSON
        flags = (", think" if depth_reasoning else "") + (", discrete" if mode == "discrete" else "") + \
            (", compiled" if compiled else "")
        self.name = f"nano[{norm_tag}{flags}]"
        self.reset()

    def reset(self) -> None:
        """New episode: drop the MolmoThink depth cache and restart the seeded noise."""
        import torch

        self._depth_cache = None
        self._index = 0
        self._carry: np.ndarray | None = None     # previous plan's normalized actions for the next k ticks
        self._carry_end: np.ndarray | None = None  # where the previous chunk's last action aimed (robot units)
        self._generator = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))

    @property
    def depth_cache(self) -> dict[str, Any] | None:
        return self._depth_cache

    def predict(self, obs: Observation) -> Step:
        from molmoact2.models.hf import order_cameras

        t0 = time.perf_counter()
        order, note = order_cameras(obs, self.meta.get("camera_keys"), self.norm_tag)
        images = [obs.cameras[name].rgb for name in order]
        prefix, carry = self._carry_for(np.asarray(obs.state, dtype=np.float32))
        out = self.model.predict_action(
            processor=self.processor, images=images, task=obs.instruction, state=np.asarray(obs.state),
            norm_tag=self.norm_tag, inference_action_mode=self.mode, enable_depth_reasoning=self.depth_reasoning,
            depth_cache=self._depth_cache if self.depth_reasoning else None, action_tokenizer=self.action_tokenizer,
            num_steps=self.num_steps, n_action_steps=self.n_action_steps, generator=self._generator,
            normalize_language=True, enable_cuda_graph=False, return_dict=True,
            **({} if prefix is None else {"action_prefix_normalized": prefix}),
            **({} if self.noise_scale == 1.0 else {"noise_scale": self.noise_scale}),
            **({} if self.plan_samples == 1 else {"plan_samples": self.plan_samples}),
            **({"constrain_action_tokens": True} if self.constrain_action_tokens else {}))
        if self.depth_reasoning:
            self._depth_cache = out["depth_cache"]
        gen = out["generated_token_ids"]
        gen = None if gen is None else gen[0].numpy().astype(np.int64)
        actions = out["actions"][0].numpy()
        if self.carry_steps:
            plan = out["denoising_states_normalized"][-1][0]  # [horizon, 32]: the whole plan, executed part first
            rest = plan[actions.shape[0]:actions.shape[0] + self.carry_steps, :actions.shape[1]]
            self._carry = rest.astype(np.float32) if len(rest) else None  # n_action_steps = horizon: nothing left
            self._carry_end = actions[-1].astype(np.float32)
        names = self.meta.get("action_stats", {}).get("names")
        denoise = out["denoising_states"]
        timings = dict(out["timings_ms"])
        timings["policy_total_ms"] = (time.perf_counter() - t0) * 1e3
        step = Step(
            index=self._index, timestamp_s=obs.timestamp_s, backend="nano", observation=obs,
            prompt_text=out["prompt_text"], prompt_token_ids=out["prompt_token_ids"].astype(np.int64),
            generated_text=None if gen is None else self.processor.decode(gen.tolist()),
            generated_token_ids=gen,
            depth_bins=None if out["depth_bins"] is None else out["depth_bins"][0].numpy().astype(np.int64),
            depth_update_mask=out["depth_update_mask"],
            action_token_ids=out["action_token_ids"], actions=actions,
            action_names=tuple(names) if names and len(names) == actions.shape[1] else None,
            action_units=f"robot units ({self.meta.get('control_mode', 'unknown control mode')})",
            n_executed=int(actions.shape[0]),
            denoising_states=None if denoise is None else denoise[:, 0].astype(np.float32),
            timings_ms=timings,
            info={"norm_tag": self.norm_tag, "mode": self.mode, "depth_reasoning": self.depth_reasoning,
                  "camera_order": order, "camera_order_note": note, "forward_calls": out["forward_calls"],
                  "kv_summary": out["kv_summary"], "checkpoint": self.checkpoint_dir},
        )
        if carry is not None:
            step.info["carry"] = carry
        if out["compiled_stages"]:  # which stages ran compiled this call (the first call at a shape also compiles)
            step.info["compiled_stages"] = list(out["compiled_stages"])
        if out.get("action_grammar_overrides") is not None:  # ids the OpenFAST length grammar replaced this call
            step.info["action_grammar_overrides"] = int(out["action_grammar_overrides"])
        if out.get("plan_choice") is not None:  # which of the K draws was kept, and how far the draws spread
            samples = out["plan_samples_normalized"][:, :actions.shape[0]]
            spread = np.sqrt(((samples - samples[out["plan_choice"]]) ** 2).sum(axis=(1, 2)))
            step.info["plan_samples"] = {"k": int(len(samples)), "choice": int(out["plan_choice"]),
                                         "distance_to_kept_normalized": spread.round(4).tolist()}
        self._index += 1
        return step

    def _carry_for(self, state: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        """The prefix to pin this call (or None) and what the Step reports about it."""
        if not self.carry_steps:
            return None, None
        if self._carry is None:
            return None, {"steps": 0, "note": "nothing to carry: the previous chunk executed the whole plan"
                          if self._index else "no previous plan (first call of the episode)"}
        stats = self.meta["action_stats"]
        if state.shape != self._carry_end.shape:
            raise ValueError(f"carry_steps: the state has {state.shape[0]} dims and the actions "
                             f"{self._carry_end.shape[0]}; carrying a plan over needs joint-position actions")
        lo, hi = ("q01", "q99") if "q01" in stats and "q99" in stats else ("min", "max")
        if lo not in stats or hi not in stats:
            raise ValueError(f"carry_steps: the action stats need q01/q99 or min/max to scale the state check, "
                             f"they have {sorted(stats)}")
        span = np.asarray(stats[hi], np.float32) - np.asarray(stats[lo], np.float32)
        names = stats.get("names") or [""] * len(span)
        arm = np.array(["gripper" not in n for n in names])  # a closed gripper stops at the object it holds
        gap = float(np.max(np.abs(state - self._carry_end)[arm] / np.maximum(span[arm], 1e-6)))
        if gap > CARRY_MAX_GAP:
            return None, {"steps": 0, "state_gap": gap,
                          "note": f"dropped: the arm is {100 * gap:.0f}% of a joint's range from where the previous "
                                  f"chunk ended (> {100 * CARRY_MAX_GAP:.0f}%): it was not executed"}
        return self._carry, {"steps": int(len(self._carry)), "state_gap": gap}

    def ask(self, images: Any, question: str, *, max_new_tokens: int = 64) -> Step:
        """A free-form (spatial) question: apply_chat_template -> generate -> Molmo2-ER parse."""
        import torch

        from molmoact2.models.hf import parse_spatial
        from molmoact2.models.nano.processing_nano import to_uint8_rgb

        images = list(images) if isinstance(images, (list, tuple)) else [images]
        arrays = [to_uint8_rgb(im) for im in images]
        t0 = time.perf_counter()
        content = [{"type": "image", "image": a} for a in arrays] + [{"type": "text", "text": question}]
        inputs = self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=True,
                                                    add_generation_prompt=True, return_dict=True)
        t1 = time.perf_counter()
        with torch.no_grad():
            seq = self.model.generate(**inputs, max_new_tokens=max_new_tokens)
        t2 = time.perf_counter()
        prompt_ids = inputs["input_ids"][0].numpy().astype(np.int64)
        new = seq[0, prompt_ids.shape[0]:].numpy().astype(np.int64)
        answer = self.processor.decode(new.tolist(), skip_special_tokens=True).strip()
        points, info = parse_spatial(answer, [(a.shape[1], a.shape[0]) for a in arrays])
        t3 = time.perf_counter()
        return Step(backend="nano", prompt_text=question, prompt_token_ids=prompt_ids, generated_token_ids=new,
                    generated_text=answer, answer_text=answer, points_px=points,
                    timings_ms={"prepare_ms": (t1 - t0) * 1e3, "generate_ms": (t2 - t1) * 1e3,
                                "parse_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t0) * 1e3},
                    info={"question": question, "spatial": info})


def load_nano(path: str | os.PathLike | None = None, *, dtype: str = "float32", **opts: Any) -> NanoPolicy:
    """Load a Nano checkpoint directory (default: the shipped `assets/nano/`) through the Auto classes."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import molmoact2.models.nano  # noqa: F401  (registers the Auto classes)

    directory = Path(path).expanduser() if path is not None else DEFAULT_PATH
    if not (directory / "config.json").is_file():
        if path is None:
            raise NotImplementedError(
                f"the Nano checkpoint is not shipped yet (issue 6; expected at {directory}). To test the code path, "
                f"build a RANDOM tiny one (meaningless actions): `{BUILD_HINT}` then load_policy('nano', "
                f"path='/tmp/nano_random'). For real control use a local MolmoAct2 checkpoint directory "
                f"(load_policy('/path/to/MolmoAct2-SO100_101', trust_remote_code=True)) or an /act server URL "
                f"(load_policy('http://HOST:PORT')).")
        raise FileNotFoundError(f"load_nano: {directory} is not a Nano checkpoint directory (no config.json); "
                                f"build a random one with `{BUILD_HINT}`")
    model = AutoModelForImageTextToText.from_pretrained(str(directory), dtype=getattr(torch, dtype))
    processor = AutoProcessor.from_pretrained(str(directory))
    return NanoPolicy(model, processor, checkpoint_dir=str(directory), **opts)
