"""`NanoPolicy`: Nano as a workbench `Policy` (Observation -> Step), and `load_nano` for the registry.

    policy = load_nano("/tmp/nano_random", depth_reasoning=True, seed=0)
    step = policy.predict(obs)     # actions + depth codes + update mask + denoising states + timings
    step = policy.ask([image], "Point to the red cube")

The model is driven through its `predict_action(...)` with the official keyword arguments, exactly
as `HFCheckpointPolicy` drives a real checkpoint; this class only adds what `Step` records.
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


class NanoPolicy:
    def __init__(self, model: Any, processor: Any, *, norm_tag: str | None = None, mode: str = "continuous",
                 depth_reasoning: bool = False, action_tokenizer: Any = None, num_steps: int | None = None,
                 n_action_steps: int | None = None, seed: int | None = None, checkpoint_dir: str | None = None) -> None:
        from molmoact2.models.hf import load_action_tokenizer

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
        self.dtype = str(model.dtype).removeprefix("torch.")  # reported by `molmoact2 serve`'s health JSON
        self.name = f"nano[{norm_tag}{', think' if depth_reasoning else ''}{', discrete' if mode == 'discrete' else ''}]"
        self.reset()

    def reset(self) -> None:
        """New episode: drop the MolmoThink depth cache and restart the seeded noise."""
        import torch

        self._depth_cache = None
        self._index = 0
        self._generator = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))

    @property
    def depth_cache(self) -> dict[str, Any] | None:
        return self._depth_cache

    def predict(self, obs: Observation) -> Step:
        from molmoact2.models.hf import order_cameras

        t0 = time.perf_counter()
        order, note = order_cameras(obs, self.meta.get("camera_keys"), self.norm_tag)
        images = [obs.cameras[name].rgb for name in order]
        out = self.model.predict_action(
            processor=self.processor, images=images, task=obs.instruction, state=np.asarray(obs.state),
            norm_tag=self.norm_tag, inference_action_mode=self.mode, enable_depth_reasoning=self.depth_reasoning,
            depth_cache=self._depth_cache if self.depth_reasoning else None, action_tokenizer=self.action_tokenizer,
            num_steps=self.num_steps, n_action_steps=self.n_action_steps, generator=self._generator,
            normalize_language=True, enable_cuda_graph=False, return_dict=True)
        if self.depth_reasoning:
            self._depth_cache = out["depth_cache"]
        gen = out["generated_token_ids"]
        gen = None if gen is None else gen[0].numpy().astype(np.int64)
        actions = out["actions"][0].numpy()
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
        self._index += 1
        return step

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
