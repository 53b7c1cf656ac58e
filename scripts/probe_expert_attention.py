"""Where does the action expert look? Its cross-attention on the named object, other objects and the bin.

    .venv/bin/python scripts/probe_expert_attention.py --checkpoint assets/nano --layouts 20

`scripts/probe_token_position.py` found that every front-image token's value holds its row in the picture (how far
from the arm's base) from language-model layer 1 on, so the action expert, which cross-attends to each layer's K/V,
could read the reach straight from the named object's tokens. Does it look there? For held-out layouts (seeds
10000..) of every task this integrates the expert from the same noise and context as `predict_action`, on the plain
path (`euler_integrate_reference`, whose blocks are ordinary module calls, so a hook sees each block's cross-attention
queries), recomputes every head's attention over the context, and averages it over the chunk's steps, the Euler
steps and the layouts. Per block and head it prints:

  * the attention mass on the front image's tokens (the rest goes to the wrist image and the text);
  * of that, the share on the token cells covering the named object, another object, the bin (a cell counts for
    whichever has the most pixels in it), each beside the share of front cells it covers: a head that looks at the
    named object more than its area share is looking for it.

With `--swap-targets` each layout is asked again naming every other object the task could be about (same picture,
only the words change), and a second table follows for one head (`--head B.H`, default the head most on the named
object): which movable object gets most of its front attention, under the layout's own instruction and under the
swapped one. A head that reads the words moves to the newly named object; one that reads the picture stays put.

Front cells are the 6 x 6 `<im_patch>` grid of the front camera (the first image in the prompt); object pixels come
from the simulator's segmentation at the evaluation's render size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("pick_place", "push_left", "push_right", "touch")
KINDS = ("named", "other", "bin")


def cell_owner(segmentation: np.ndarray, labels: dict[int, str], grid: int) -> np.ndarray:
    """[grid * grid] kind per token cell, row-major: 'named' / 'other' / 'bin' for the object with the most pixels
    in the cell, '' for a cell with no object pixel."""
    h, w = segmentation.shape
    out = np.full(grid * grid, "", dtype=object)
    for r in range(grid):
        for c in range(grid):
            cell = segmentation[r * h // grid:(r + 1) * h // grid, c * w // grid:(c + 1) * w // grid]
            ids, counts = np.unique(cell[np.isin(cell, list(labels))], return_counts=True)
            if len(ids):
                out[r * grid + c] = labels[int(ids[np.argmax(counts)])]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano")
    p.add_argument("--layouts", type=int, default=20, help="held-out layouts per task (seeds from 10000)")
    p.add_argument("--swap-targets", action="store_true",
                   help="also name every other candidate object of each layout and report whether one head follows")
    p.add_argument("--head", default="", metavar="B.H",
                   help="the head of the swap table, block.head (default: the head most on the named object)")
    a = p.parse_args(argv)
    if a.head and not a.swap_targets:
        p.error("--head picks the head of the --swap-targets table; pass --swap-targets too")
    if a.head and (a.head.count(".") != 1 or not a.head.replace(".", "").isdigit()):
        p.error(f"--head: expected block.head, e.g. 3.1, got {a.head!r}")

    import torch

    from molmoact2.evaluation.first_frames import first_frames
    from molmoact2.models.nano.action_expert import euler_integrate_reference
    from molmoact2.models.nano.expert_probe import initial_noise
    from molmoact2.models.nano.normalization import stats_dim
    from molmoact2.models.nano.policy import load_nano

    torch.set_num_threads(1)
    policy = load_nano(a.checkpoint)
    model, processor = policy.model, policy.processor
    expert = model.action_expert
    tag = sorted(model.norm_stats["metadata_by_tag"])[0]
    meta = model.norm_stats["metadata_by_tag"][tag]
    cfg = model.config
    blocks, heads = len(expert.blocks), expert.blocks[0].heads
    if a.head and not (int(a.head.split(".")[0]) < blocks and int(a.head.split(".")[1]) < heads):
        p.error(f"--head {a.head}: this expert has blocks 0..{blocks - 1} with heads 0..{heads - 1}")
    queries: list[list[torch.Tensor]] = [[] for _ in range(blocks)]
    hooks = [blk.cross_q_norm.register_forward_hook(lambda _m, _i, out, b=b: queries[b].append(out))
             for b, blk in enumerate(expert.blocks)]
    dim_mask = None
    if cfg.mask_action_dim_padding:
        dim_mask = torch.zeros(cfg.max_action_dim)
        dim_mask[:stats_dim(meta["action_stats"], "action")] = 1.0
    front = np.zeros((blocks, heads))  # summed over layouts
    share = {k: np.zeros((blocks, heads)) for k in KINDS}  # of the front mass
    area = {k: 0.0 for k in KINDS}
    seen = {k: 0 for k in KINDS}  # layouts in which the kind covers at least one front cell
    n = 0
    # --swap-targets: per layout, the head mass on each movable object under each instruction (own first)
    swaps: list[list[tuple[str, dict[str, np.ndarray]]]] = []
    last_seed = None
    for env, seed, obs, order, out in first_frames(model, processor, tag, TASKS, range(10000, 10000 + a.layouts),
                                                   segmentation=True, swap_targets=a.swap_targets):
        target = env.instance.target
        own = (env.task.name, seed) != last_seed  # first_frames yields a layout's own instruction first
        last_seed = (env.task.name, seed)
        labels = {o.label: ("named" if o.name == target else "bin" if o.name == "bin" else "other")
                  for o in env.scene.objects}
        with torch.inference_mode():
            contexts = [(torch.from_numpy(k), torch.from_numpy(v)) for k, v in out["context_kv"]]
            key_mask = torch.from_numpy(out["context_mask"]).bool()
            for qs in queries:
                qs.clear()
            euler_integrate_reference(expert, initial_noise(model, tag, seed), contexts, key_mask,
                                      int(cfg.flow_matching_num_steps), dim_mask)
            projected = expert.project_contexts(contexts)
            attn = []
            for b, blk in enumerate(expert.blocks):
                k = blk._heads(projected[b][0])  # [1, heads, T, hd]
                q = torch.cat(queries[b], dim=0)  # [steps, heads, H, hd]
                scores = q @ k.transpose(-1, -2) / blk.head_dim ** 0.5
                scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
                attn.append(scores.softmax(-1).mean(dim=(0, 2)).numpy())  # [heads, T]
        attn = np.stack(attn)  # [blocks, heads, T]
        patches = np.flatnonzero(out["prompt_token_ids"] == cfg.image_patch_id)
        grid = int(round((len(patches) // len(order)) ** 0.5))
        front_pos = patches[:grid * grid]
        owner = cell_owner(obs.cameras[order[0]].segmentation, labels, grid)
        on_front = attn[:, :, front_pos]  # [blocks, heads, cells]
        if a.swap_targets:
            names = cell_owner(obs.cameras[order[0]].segmentation,
                               {o.label: o.name for o in env.scene.objects if o.name != "bin"}, grid)
            per_object = {name: on_front[:, :, names == name].sum(-1) for name in set(names) - {""}}
            if own:
                swaps.append([])
            swaps[-1].append((target, per_object))
        if not own:
            continue
        mass = on_front.sum(-1)
        front += mass
        for kind in KINDS:
            cells = owner == kind
            area[kind] += cells.mean()
            seen[kind] += int(cells.any())
            share[kind] += on_front[:, :, cells].sum(-1) / np.maximum(mass, 1e-12)
        n += 1
    for h in hooks:
        h.remove()

    print(f"{a.checkpoint}: the action expert's cross-attention, mean over {n} held-out layouts (seeds 10000+, "
          f"{a.layouts} per task), the chunk's steps and {cfg.flow_matching_num_steps} Euler steps")
    print("front cells covered (a cell goes to the object with most pixels in it): " + ", ".join(
        f"{k} {100 * area[k] / n:.1f}% (visible in {seen[k]}/{n} layouts)" for k in KINDS))
    print("| block (LM layer) | head | on the front image | of that: named object | other objects | bin |")
    print("|---|---|---|---|---|---|")
    for b in range(blocks):
        for h in range(heads):
            print(f"| {b} | {h} | {100 * front[b, h] / n:.1f}% | " + " | ".join(
                f"{100 * share[k][b, h] / n:.1f}%" for k in KINDS) + " |")
    best = np.unravel_index(np.argmax(share["named"]), share["named"].shape)
    print(f"most on the named object: block {best[0]} head {best[1]}, {100 * share['named'][best] / n:.1f}% of its "
          f"front attention against the object's {100 * area['named'] / n:.1f}% of the front cells")
    if a.swap_targets:
        b, h = (int(x) for x in a.head.split(".")) if a.head else best
        print_swaps(swaps, b, h)


def print_swaps(swaps: list[list[tuple[str, dict[str, np.ndarray]]]], block: int, head: int) -> None:
    """Follows the words or the picture? Per pair (own instruction, one naming another object of the same layout):
    the movable object with most of head `block.head`'s front attention under each."""
    def pick(per_object: dict[str, np.ndarray]) -> str:
        return max(per_object, key=lambda name: per_object[name][block, head]) if per_object else ""

    pairs = [(own_t, pick(own_m), t, pick(m)) for layout in swaps for own_t, own_m in layout[:1]
             for t, m in layout[1:]]
    total = len(pairs)
    if not total:
        print("--swap-targets: no layout has a second candidate object")
        return
    own_hit = sum(own_t == own_p for own_t, own_p, _, _ in pairs)
    swap_hit = sum(t == p for _, _, t, p in pairs)
    both = sum(own_t == own_p and t == p for own_t, own_p, t, p in pairs)
    same = sum(own_p == p for _, own_p, _, p in pairs)
    chance = np.mean([1 / max(len(m), 1) for layout in swaps if len(layout) > 1 for _, m in layout])
    print(f"\nwords or picture: block {block} head {head}, {total} name swaps in "
          f"{sum(len(layout) > 1 for layout in swaps)} layouts with 2+ candidates (chance of one visible movable "
          f"object {100 * chance:.0f}%)")
    print("| the movable object with most of the head's front attention | pairs |")
    print("|---|---|")
    for label, k in (("own instruction: the named object", own_hit),
                     ("swapped instruction: the newly named object", swap_hit),
                     ("the named object under both (follows the words)", both),
                     ("the same object under both (reads only the picture)", same)):
        print(f"| {label} | {100 * k / total:.0f}% ({k}/{total}) |")


if __name__ == "__main__":
    main()
