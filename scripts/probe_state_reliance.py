"""What does a Nano plan depend on: the pictures, or the state tokens? A few minutes on CPU.

    .venv/bin/python scripts/probe_state_reliance.py --checkpoint assets/nano --data /tmp/nano_heldout

For frames 0, 15 and 30 of every episode in a held-out demo cache, the continuous chunk is planned once as the
policy would (own images, own state, instruction, noise seed 0) and again with ONE input changed:
  * noise      another noise draw (seed 1): the spread the flow expert adds by itself;
  * images     both camera images of another episode of the same task, same frame index;
  * blank      both images replaced by uniform grey;
  * state      the state of that other episode's frame (so the state tokens disagree with the pictures).
Each row is the mean |difference| of the two chunks as % of each joint's 1-99% action range (the cache's
norm stats), per joint and overall. The last row is how far apart the swapped states themselves were: a
model that reads the state tokens moves its plan by a good part of that. A last line gives the mean cosine
similarity of neighbouring state-bin embedding rows (near 0: unrelated vectors; `train nano --ordinal-state`
starts them near 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAMES = (0, 15, 30)
CHANGES = ("noise", "images", "blank", "state")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano", help="Nano checkpoint directory")
    p.add_argument("--data", default="/tmp/nano_heldout", help="held-out demo cache (`molmoact2 train data`)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from tqdm.auto import tqdm

    from molmoact2.models.nano.inference import predict_action
    from molmoact2.models.nano.policy import load_nano
    from molmoact2.training.nano_examples import NanoTrainData

    policy = load_nano(a.checkpoint)
    data = NanoTrainData.load(a.data, progress=False)
    stats = data.norm_stats["metadata_by_tag"][data.tag]["action_stats"]
    range_units = np.asarray(stats["q99"], np.float64) - np.asarray(stats["q01"], np.float64)
    range_units = np.where(range_units > 1e-6, range_units, 1.0)
    tasks = [e["task"] for e in data.meta["episodes"]]
    rng = np.random.default_rng(0)
    diffs: dict[str, list[np.ndarray]] = {k: [] for k in (*CHANGES, "swapped states")}

    def plan(ep, images, state, noise_seed: int) -> np.ndarray:
        out = predict_action(policy.model, processor=policy.processor, images=images, task=ep["instruction"],
                             state=state, norm_tag=data.tag, inference_action_mode="continuous",
                             generator=torch.Generator().manual_seed(noise_seed))
        return out["actions"][0].numpy()

    for e in tqdm(range(len(data.episodes)), desc="probe", unit="ep", file=sys.stderr):
        ep = data.episodes[e]
        same_task = [j for j in range(len(data.episodes)) if j != e and tasks[j] == tasks[e]]
        if not same_task:
            continue
        for f in FRAMES:
            if f >= len(ep["action"]):
                continue
            other = data.episodes[same_task[int(rng.integers(len(same_task)))]]
            fo = min(f, len(other["action"]) - 1)
            own = [ep["front"][f], ep["wrist"][f]]
            base = plan(ep, own, ep["state"][f], 0)
            changed = {"noise": plan(ep, own, ep["state"][f], 1),
                       "images": plan(ep, [other["front"][fo], other["wrist"][fo]], ep["state"][f], 0),
                       "blank": plan(ep, [np.full_like(im, 128) for im in own], ep["state"][f], 0),
                       "state": plan(ep, own, other["state"][fo], 0)}
            for k, chunk in changed.items():
                diffs[k].append(np.abs(chunk - base).mean(axis=0) / range_units)
            diffs["swapped states"].append(np.abs(np.asarray(other["state"][fo]) - ep["state"][f]) / range_units)

    if not diffs["noise"]:
        raise SystemExit(f"probe_state_reliance: {a.data} has no task with two episodes; the probe swaps in another "
                         f"episode of the same task (molmoact2 train data --episodes-per-task 2 or more)")
    names = data.norm_stats["metadata_by_tag"][data.tag]["action_stats"].get("names") or []
    joints = [n.removesuffix(".pos") for n in names] or [f"j{i}" for i in range(len(range_units))]
    print(f"plan change when one input changes ({a.checkpoint}, {len(diffs['noise'])} frames of {a.data}; "
          f"mean |diff| as % of each joint's action range)")
    print("| change | all joints | " + " | ".join(joints) + " |")
    print("|---|---|" + "---|" * len(joints))
    for k, rows in diffs.items():
        m = 100 * np.mean(rows, axis=0)
        print(f"| {k} | {m.mean():.1f} | " + " | ".join(f"{v:.1f}" for v in m) + " |")
    cfg = policy.model.config
    start = int(cfg.state_token_start_id)
    rows = policy.model.lm.embed_tokens.weight.detach().float()[start:start + int(cfg.num_state_tokens)]
    unit = torch.nn.functional.normalize(rows, dim=1)
    print(f"state-bin embedding rows: neighbouring bins' mean cosine similarity "
          f"{float((unit[1:] * unit[:-1]).sum(1).mean()):.2f}")


if __name__ == "__main__":
    main()
