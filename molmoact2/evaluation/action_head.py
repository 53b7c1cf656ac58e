"""Where one attention head looks when the model is asked for ACTIONS, and whether the instruction's words move it.

    reading = action_head_reading(policy, data, layer=3, head=0)     # `eval qa --head 3.0` on a demo cache

`train nano --ground-actions` teaches head (layer, head) to look, at the state tokens and the prompt's last token,
at the object the instruction names. This measures it on demo frames whose full segmentation the cache keeps
(the question frames), once with the demo's own instruction and once per other visible movable object with the
instruction naming that object instead (the same words swap `eval nano --swap-targets` and `eval words` make):

* `share_own` / `share_other`: the head's attention share on the named object's `<im_patch>` tokens (front camera),
  averaged over the query positions, under the own / a swapped instruction; `even` = what attention spread evenly
  over the image tokens would put there;
* `top_own_rate` / `top_other_rate`: how often its most-attended front-image token lies on the named object;
* `follows_rate`: in frames with 2+ objects, the top token is on the named object under BOTH instructions (the
  head reads the words); `same_rate`: it is on the same object under both (the head reads only the picture).

A head the action expert could use to find the named object scores far above `even` under both instructions.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _top_object(on_image: np.ndarray, fractions: dict[str, np.ndarray]) -> str | None:
    """The object whose pixels dominate the most-attended image token (None: background)."""
    cell = int(on_image.argmax())
    best = max(fractions, key=lambda n: fractions[n][cell])
    return best if fractions[best][cell] > 0 else None


def action_head_reading(policy: Any, data: Any, layer: int, head: int, max_frames: int | None = 200,
                        progress: bool = False) -> dict[str, Any] | None:
    """The summary above over up to `max_frames` question frames of `data`'s demos (None if it has none with
    the demo's object in view)."""
    from tqdm.auto import tqdm

    from molmoact2.evaluation.report import FIXTURES
    from molmoact2.models.nano.grounding import cell_fractions, example_head_cells
    from molmoact2.models.nano.train_step import build_example
    from molmoact2.training.nano_vision import scene_labels

    model, processor = policy.model, policy.processor
    named = scene_labels(data.qa)  # {(cache, segmentation key): {label: name}}
    frames = sorted({(q["episode"], q["frame"], q.get("cache", 0), q["seg_key"]) for q in data.qa if "episode" in q})
    frames = frames[:max_frames] if max_frames else frames
    own, other, even, top_own, top_other, follows, same, pairs = [], [], [], 0, 0, 0, 0, 0

    def attention(e: int, f: int, instruction: str, mask: np.ndarray) -> np.ndarray:
        ep = data.episodes[e]
        ex = build_example(model, processor, style="action", images=[ep["front"][f], ep["wrist"][f]],
                           norm_tag=data.tag, task=instruction, state=ep["state"][f], actions=data.chunk(e, f),
                           ground_mask=mask)
        return example_head_cells(model, processor, ex, layer, head)[0]  # [cells], averaged over the queries

    for e, f, cache_index, key in tqdm(frames, desc=f"action head {layer}.{head}", unit="frame",
                                       disable=not progress or not frames):
        target = data.meta["episodes"][e]["target"]
        instruction = str(data.episodes[e]["instruction"])
        labels = {n: lab for lab, n in named.get((cache_index, key), {}).items() if n not in FIXTURES}
        if target not in labels or f"the {target}" not in instruction:
            continue
        seg = data.qa_segmentation({"cache": cache_index, "seg_key": key})
        masks = {n: seg == lab for n, lab in labels.items()}
        fractions = {n: cell_fractions(m, processor.image_grid) for n, m in masks.items()}
        seen = attention(e, f, instruction, masks[target])
        own.append(float(seen[fractions[target] > 0].sum()))
        even.append(float(seen.sum()) * float((fractions[target] > 0).mean()))
        first = _top_object(seen, fractions)
        top_own += first == target
        for name in labels:
            if name == target:
                continue
            swapped = attention(e, f, instruction.replace(f"the {target}", f"the {name}", 1), masks[name])
            other.append(float(swapped[fractions[name] > 0].sum()))
            second = _top_object(swapped, fractions)
            top_other += second == name
            pairs += 1
            follows += first == target and second == name
            same += first is not None and first == second
    if not own:
        return None
    return {"layer": layer, "head": head, "frames": len(own), "pairs": pairs,
            "share_own": round(float(np.mean(own)), 3), "share_other": round(float(np.mean(other)), 3) if other else None,
            "even": round(float(np.mean(even)), 3), "top_own": top_own, "top_own_rate": top_own / len(own),
            "top_other": top_other, "top_other_rate": top_other / pairs if pairs else None,
            "follows": follows, "follows_rate": follows / pairs if pairs else None,
            "same": same, "same_rate": same / pairs if pairs else None}
