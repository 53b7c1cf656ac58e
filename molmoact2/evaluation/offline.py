"""Open-loop measurements on a held-out data cache (`molmoact2 train data --first-seed 10000 ...`).

    data = NanoTrainData.load("/tmp/nano_heldout")
    episode_metrics(model, processor, data, episode=3, action_tokenizer=tok)   # depth codes + action error
    qa_metrics(policy, data, item)                                             # one spatial question

Per held-out expert episode, at every query frame (every `n_action_steps` frames, as in the closed
loop), three predictions from the same observation:
  continuous  flow expert, no depth          -> error vs the expert's next n_action_steps actions
  discrete    OpenFAST tokens, no depth      -> the same error (or the decode failure, counted)
  think       depth + continuous, the MolmoThink cache carried from the previous query
              -> depth-code accuracy vs the VQ-VAE codes of the true depth (first query: all 100
              codes decoded; later queries: the changed cells decoded, the rest replayed)
Errors are in robot units and as a percentage of each joint's q01..q99 range (the normalization span).

Spatial questions are asked about the stored front frame; answers are parsed with `molmoact2.spatial`
and checked against the ground-truth segmentation at render size: a point is right when it falls
inside the target's mask; a count is right when it equals the number of visible objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _expert_chunk(actions: np.ndarray, frame: int, n: int) -> np.ndarray:
    idx = np.minimum(np.arange(frame, frame + n), len(actions) - 1)  # the expert holds after its last action
    return actions[idx]


def joint_span(action_stats: dict[str, Any]) -> np.ndarray:
    """Each joint's q01..q99 range, the denominator of every "% of joint range" here (1 where a joint never moved)."""
    span = np.asarray(action_stats["q99"], np.float64) - np.asarray(action_stats["q01"], np.float64)
    return np.where(span > 1e-6, span, 1.0)


def clock_baseline(episodes: list[tuple[str, np.ndarray]], span: np.ndarray, stride: int) -> dict[str, Any] | None:
    """The action error a policy blind to the layout would make: at each query frame (as `episode_metrics`),
    predict the mean of the OTHER episodes' expert chunks of the same task at the same frame (leave-one-out;
    an episode shorter than the frame holds its last action, as `_expert_chunk` does). It knows the task and
    the clock, nothing of the picture or the state: the floor the action heads' error has to beat, as the
    majority code is for depth. A mean has no sampling spread, which a flow policy's single draw has, so the
    record also keeps `one_demo_mae_pct`: the error of replaying ONE other demo's chunk, averaged over the others
    (a blind policy that samples). `episodes` = [(task, actions [T, D])]; `span` [D] = `joint_span(...)`.
    None when no task has two episodes."""
    total, total_one, n_actions, n_queries = np.zeros(len(span)), np.zeros(len(span)), 0, 0
    for i, (task, actions) in enumerate(episodes):
        others = [a for j, (t, a) in enumerate(episodes) if t == task and j != i]
        if not others:
            continue
        for f in range(0, len(actions), stride):
            chunks = np.stack([_expert_chunk(a, f, stride) for a in others])  # [others, stride, D]
            truth = _expert_chunk(actions, f, stride)
            total += (np.abs(truth - chunks.mean(axis=0)) / span * 100).sum(axis=0)
            total_one += (np.abs(truth[None] - chunks) / span * 100).mean(axis=0).sum(axis=0)
            n_actions += stride
            n_queries += 1
    if not n_queries:
        return None
    pct, one = total / n_actions, total_one / n_actions
    return {"n_queries": n_queries, "mae_pct_per_joint": pct.tolist(), "mae_pct": float(pct.mean()),
            "one_demo_mae_pct_per_joint": one.tolist(), "one_demo_mae_pct": float(one.mean())}


def clock_baseline_of_cache(data_dir: str) -> dict[str, Any] | None:
    """`clock_baseline` over a data cache's episodes (reads only their actions and the norm stats)."""
    import json
    from pathlib import Path

    from molmoact2.training.nano_data import load_meta

    root = Path(data_dir)
    stats = json.loads((root / "norm_stats.json").read_text())
    (meta,) = stats["metadata_by_tag"].values()
    episodes = []
    for e in load_meta(root)["episodes"]:
        with np.load(root / e["file"]) as z:
            episodes.append((e["task"], z["action"].astype(np.float64)))
    return clock_baseline(episodes, joint_span(meta["action_stats"]), int(meta["n_action_steps"]))


def episode_metrics(model: Any, processor: Any, data: Any, episode: int, *, action_tokenizer: Any,
                    seed: int = 0, num_steps: int | None = None,
                    constrain_action_tokens: bool = False) -> dict[str, Any]:
    """Open-loop figures of one held-out episode; `num_steps` = the flow expert's Euler steps (None: the
    checkpoint's default); `constrain_action_tokens`: the discrete decode under the OpenFAST length grammar."""
    import torch

    from molmoact2.models.nano.inference import predict_action

    meta = data.norm_stats["metadata_by_tag"][data.tag]
    stride = int(meta["n_action_steps"])
    span = joint_span(meta["action_stats"])
    ep = data.episodes[episode]
    common = dict(processor=processor, task=ep["instruction"], norm_tag=data.tag, n_action_steps=stride,
                  num_steps=num_steps, enable_cuda_graph=False, return_dict=True)
    rows: dict[str, list[Any]] = {"continuous_abs": [], "discrete_abs": [], "think_abs": [], "discrete_errors": [],
                                  "discrete_overrides": [], "discrete_changed_abs": [],
                                  "depth_first_correct": [], "depth_later_correct": [], "depth_changed_correct": [],
                                  "depth_changed_cells": []}
    cache = None
    for f in range(0, len(ep["action"]), stride):
        images = [ep["front"][f], ep["wrist"][f]]
        target = _expert_chunk(ep["action"], f, stride).astype(np.float64)
        gen = torch.Generator().manual_seed(seed + f)
        out = predict_action(model, images=images, state=ep["state"][f], inference_action_mode="continuous",
                             generator=gen, **common)
        rows["continuous_abs"].append(np.abs(out["actions"][0].numpy() - target))
        try:
            out = predict_action(model, images=images, state=ep["state"][f], inference_action_mode="discrete",
                                 action_tokenizer=action_tokenizer, constrain_action_tokens=constrain_action_tokens,
                                 **common)
            rows["discrete_abs"].append(np.abs(out["actions"][0].numpy() - target))
            if constrain_action_tokens:  # the chunks the grammar changed, apart: how good is a forced guess?
                rows["discrete_overrides"].append(int(out["action_grammar_overrides"]))
                if out["action_grammar_overrides"]:
                    rows["discrete_changed_abs"].append(rows["discrete_abs"][-1])
        except Exception as exc:  # noqa: BLE001 -- a decode failure is a measured outcome
            rows["discrete_errors"].append(f"frame {f}: {type(exc).__name__}: {str(exc)[:160]}")
        out = predict_action(model, images=images, state=ep["state"][f], inference_action_mode="continuous",
                             enable_depth_reasoning=True, depth_cache=cache, generator=torch.Generator().manual_seed(seed + f),
                             **common)
        cache = out["depth_cache"]
        rows["think_abs"].append(np.abs(out["actions"][0].numpy() - target))
        correct = out["depth_bins"][0].numpy() == ep["depth_codes"][f]
        mask = np.asarray(out["depth_update_mask"], bool)
        if f == 0:
            rows["depth_first_correct"].append(correct)
        else:
            rows["depth_later_correct"].append(correct)
            rows["depth_changed_correct"].append(correct[mask])
            rows["depth_changed_cells"].append(float(mask.mean()))

    def err(key: str) -> dict[str, Any] | None:
        if not rows[key]:
            return None
        a = np.concatenate(rows[key])  # [queries * stride, dims]
        return {"n_queries": len(rows[key]), "mae_units": a.mean(0).tolist(), "mae_pct": (100 * a / span).mean(0).tolist(),
                "sum_abs_units": a.sum(0).tolist(), "sum_abs_pct": (100 * a / span).sum(0).tolist(), "n_actions": len(a)}

    def count(key: str) -> list[int]:
        hits = np.concatenate(rows[key]) if rows[key] else np.zeros(0, bool)
        return [int(hits.sum()), int(hits.size)]

    return {"episode": episode, "task": data.meta["episodes"][episode]["task"],
            "seed": data.meta["episodes"][episode]["seed"], "queries": len(rows["continuous_abs"]),
            "continuous": err("continuous_abs"), "discrete": err("discrete_abs"), "think": err("think_abs"),
            "discrete_grammar_changed": err("discrete_changed_abs"),
            "discrete_failures": rows["discrete_errors"],
            "discrete_grammar_overrides": rows["discrete_overrides"] if constrain_action_tokens else None,
            "depth_first": count("depth_first_correct"),
            "depth_later": count("depth_later_correct"), "depth_changed": count("depth_changed_correct"),
            "depth_changed_fraction": float(np.mean(rows["depth_changed_cells"])) if rows["depth_changed_cells"] else None,
            # histogram of the true codes at the query frames: the majority-code baseline needs it
            "true_code_counts": np.bincount(ep["depth_codes"][::stride].reshape(-1),
                                            minlength=model.config.num_depth_tokens).tolist()}


def lands_on(seg: np.ndarray, labels: list[int], x_px: float, y_px: float) -> bool:
    """Whether a point (pixels of `seg`) falls on one of `labels` in the segmentation."""
    from molmoact2 import spatial

    col, row = spatial.pixel_index(x_px, y_px, width=seg.shape[1], height=seg.shape[0])
    return bool(np.isin(seg[row, col], labels))


def _first_point_lands(answer: str, seg: np.ndarray, labels: list[int]) -> bool:
    """A point/closer question's grade: the answer's first point on image 1 lies on one of `labels`."""
    from molmoact2 import spatial

    points = spatial.parse_answer(answer).points_px(width=seg.shape[1], height=seg.shape[0], image=1)
    return bool(len(points)) and lands_on(seg, labels, *points[0])


def qa_metrics(policy: Any, data: Any, index: int, ensemble: Any = None) -> dict[str, Any]:
    """Ask held-out question `index`; grade it against the ground truth. `ensemble`: a
    `molmoact2.point_ensemble.ShiftEnsemble` (the point averaged over shifted copies of the image) or None (one pass)."""
    from molmoact2 import spatial
    from molmoact2.evaluation.qa_compare import question_layout

    item = data.qa[index]
    if ensemble is None:
        step = policy.ask([data.qa_image(item)], item["question"])
    else:
        from molmoact2.point_ensemble import ask_shifted

        step = ask_shifted(policy, data.qa_image(item), item["question"], ensemble)
    answer = step.answer_text or ""
    seg = data.qa_segmentation(item)
    h, w = seg.shape
    parsed = spatial.parse_answer(answer)
    points = parsed.points_px(width=w, height=h, image=1)
    rec: dict[str, Any] = {"index": index, "kind": item["kind"], "question": item["question"], "answer": answer,
                           "expected": item["answer"], "n_points": int(len(points)),
                           # the simulator seed: questions of one layout are not independent (qa_compare)
                           "layout": question_layout(data.meta, item)}
    shifted = step.info.get("shift_ensemble")
    if shifted is not None and shifted.get("applied") and item["kind"] in ("point", "closer"):
        rec["single_pass_answer"] = shifted["single_pass_answer"]
        rec["single_pass_correct"] = _first_point_lands(shifted["single_pass_answer"], seg, item["labels"])
    if item["kind"] in ("point", "closer"):
        rec["correct"] = _first_point_lands(answer, seg, item["labels"])
    elif item["kind"] == "point_absent":
        rec["correct"] = len(points) == 0 and parsed.count == 0
    elif item["kind"] == "count":
        got = parsed.count if parsed.count is not None else (len(points) if len(points) else None)
        rec["count_expected"], rec["count_got"] = int(item["count"]), got
        rec["correct"] = got == int(item["count"])
    else:
        rec["correct"] = None  # boxes are trained but not graded here
    return rec
