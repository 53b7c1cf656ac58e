"""Does each image token know where in the picture it sits? Linear probes, about a minute on CPU.

    .venv/bin/python scripts/probe_token_position.py --checkpoint assets/nano --layouts 40

`scripts/probe_reach.py` found that the language model's context at the prompt's last position holds no distance to
the named object (or to the bin) although the front image tokens, taken together, hold the bin's. One explanation
would be that a single token does not say where it is: attention moves a token's *value* to the reader, and 1-D
RoPE rotates only queries and keys, so a place that is not in the value itself cannot reach the last position (nor
the action expert, which cross-attends to the same K/V). This measures it: for the front camera's pooled tokens
(a 6 x 6 grid, row-major in the prompt) it fits a ridge regression from each token's vector to its grid row and
column, on layouts 10000.. of every task (fit on the first 3/4, scored as R^2 on the last 1/4), for

  * the image features the language model receives (the vision encoder + adapter output);
  * the V, and the post-RoPE K, of each language-model layer at those tokens' positions (what the expert reads).

Row is the image's vertical axis (in our front camera: how far from the arm's base), column the horizontal one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("pick_place", "push_left", "push_right", "touch")


def ridge_r2(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, lam: float = 1.0
             ) -> list[float]:
    """Held-out R^2 per target column of a ridge regression on standardized features (one fixed strength: the
    fit sets hold thousands of tokens, far more rows than features)."""
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    a = np.c_[(x_fit - mu) / sd, np.ones(len(x_fit))]
    b = np.c_[(x_test - mu) / sd, np.ones(len(x_test))]
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y_fit)
    pred = b @ w
    return [1.0 - float(((pred[:, j] - y_test[:, j]) ** 2).sum() / ((y_test[:, j] - y_test[:, j].mean()) ** 2).sum())
            for j in range(y_test.shape[1])]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano")
    p.add_argument("--layouts", type=int, default=40, help="layouts per task (seeds from 10000)")
    a = p.parse_args(argv)

    import torch

    from molmoact2.evaluation.first_frames import first_frames
    from molmoact2.models.nano.policy import load_nano

    torch.set_num_threads(1)
    policy = load_nano(a.checkpoint)
    model, processor = policy.model, policy.processor
    tag = sorted(model.norm_stats["metadata_by_tag"])[0]
    patch_id = model.config.image_patch_id
    rows: dict[str, list[np.ndarray]] = {}
    grid = None
    for _env, _seed, obs, order, out in first_frames(model, processor, tag, TASKS, range(10000, 10000 + a.layouts)):
        with torch.inference_mode():
            inputs = processor(text=out["prompt_text"], images=[obs.cameras[name].rgb for name in order])
            feats = model.encode_images(inputs["pixel_values"].to(model.dtype))[0].float().numpy()  # front
        positions = np.flatnonzero(out["prompt_token_ids"] == patch_id)[:len(feats)]  # front camera first
        if grid is None:
            side = int(round(len(feats) ** 0.5))
            if side * side != len(feats):
                raise ValueError(f"expected a square grid of front-image tokens, got {len(feats)}")
            grid = np.array([[i // side, i % side] for i in range(len(feats))], dtype=np.float64)
        rows.setdefault("image features (LM input)", []).append(feats)
        for layer, (k, v) in enumerate(out["context_kv"]):
            rows.setdefault(f"layer {layer} V", []).append(v[0, positions])
            rows.setdefault(f"layer {layer} K (post-RoPE)", []).append(k[0, positions])
    n = len(rows["image features (LM input)"])
    fit = np.zeros(n, dtype=bool)
    per_task = a.layouts
    for t in range(len(TASKS)):  # the first 3/4 of each task's layouts fit, the rest score
        fit[t * per_task: t * per_task + (3 * per_task) // 4] = True
    print(f"{a.checkpoint}: R^2 of each front-image token's grid row / column from its vector, "
          f"{int(fit.sum())} layouts fit, {int((~fit).sum())} scored ({len(grid)} tokens each)")
    print(f"{'source':28s}{'row':>7s}{'column':>8s}")
    order_names = ["image features (LM input)"] + [f"layer {i} {kind}" for kind in ("V", "K (post-RoPE)")
                                                   for i in range(len(out["context_kv"]))]
    for name in order_names:
        x = np.asarray(rows[name], dtype=np.float64)  # [layouts, tokens, dim]
        y = np.broadcast_to(grid, (n,) + grid.shape)
        r_row, r_col = ridge_r2(x[fit].reshape(-1, x.shape[-1]), y[fit].reshape(-1, 2),
                                x[~fit].reshape(-1, x.shape[-1]), y[~fit].reshape(-1, 2))
        print(f"{name:28s}{r_row:7.2f}{r_col:8.2f}")


if __name__ == "__main__":
    main()
