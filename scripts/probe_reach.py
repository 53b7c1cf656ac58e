"""Where is "how far to reach" lost? Linear probes from the picture to the plan, a few minutes on CPU.

    .venv/bin/python scripts/probe_reach.py --checkpoint assets/nano --fit-seeds 100 --test-seeds 50

Nano's held-out action error ties a layout-blind baseline at the shoulder lift and elbow (the reach) and beats it
only at the shoulder pan (the turn): it sees which way to turn, not how far to reach (docs/nano_experiments.md,
"training-layouts"). This asks where along the path that quantity goes missing. For the first frame of layouts of
every task it records the named object's horizontal distance from the arm's base (cm) and its bearing (degrees),
and fits a ridge regression to each from several sources, each one step further along the path:

  * the object's centre in the front image (from the simulator's segmentation, with its square terms): what a perfect
    detector would hand on; how much of the reach the camera's view holds at all;
  * the front camera's image tokens (the vision encoder's output the language model reads; it knows where
    things are, not which one the words name);
  * the language model's context at the prompt's last position, per layer (the K and V the action expert
    cross-attends to, all layers concatenated): the image and the words together;
  * the plan: the model's action chunk (every joint, every tick) and, as a ceiling, the scripted expert's first
    chunk of as many ticks.

The same sources are probed for the bin's distance and bearing: one bin per scene and no word needed to find it,
so a source that has the bin's place but not the named object's has the picture and lacks the binding of a name.

Fitted on the layouts from --fit-first-seed (training-like), scored as R^2 on held-out layouts from 10000, so a
source that only memorises scores low. A source with a high R^2 has the quantity in linear reach; a drop from one
source to the next says where it is lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("pick_place", "push_left", "push_right", "touch")


def ridge_r2(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out R^2 of a ridge regression whose strength is chosen by 5-fold cross-validation on the fit set.

    Dual form (an n x n solve) because the image-token source has far more columns than there are layouts."""
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    a, b = (x_fit - mu) / sd, (x_test - mu) / sd
    y_mu = y_fit.mean()

    def fit_predict(xa, ya, xb, lam):
        alpha = np.linalg.solve(xa @ xa.T + lam * len(xa) * np.eye(len(xa)), ya - y_mu)
        return xb @ (xa.T @ alpha) + y_mu

    folds = np.array_split(np.random.default_rng(0).permutation(len(a)), 5)
    best, best_err = None, np.inf
    for lam in 10.0 ** np.arange(-3, 4):
        err = 0.0
        for f in folds:
            keep = np.setdiff1d(np.arange(len(a)), f)
            err += float(((fit_predict(a[keep], y_fit[keep], a[f], lam) - y_fit[f]) ** 2).sum())
        if err < best_err:
            best, best_err = lam, err
    pred = fit_predict(a, y_fit, b, best)
    return 1.0 - float(((pred - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum())


def collect(model, processor, norm_tag: str, seeds: range, num_steps: int | None, desc: str) -> dict[str, np.ndarray]:
    """One row per (task, seed): the targets and every source's features, from the first frame of the layout."""
    import torch
    from tqdm.auto import tqdm

    from molmoact2.models.hf import order_cameras
    from molmoact2.models.nano.normalization import unnormalize_actions
    from molmoact2.models.nano.processing_nano import preprocess_image
    from molmoact2.sim import make_env

    meta = model.norm_stats["metadata_by_tag"][norm_tag]
    norm_mode = model.norm_stats.get("norm_mode", "min_max")
    size = tuple(model.config.vit_config.image_default_input_size)
    rows: dict[str, list] = {k: [] for k in ("distance_cm", "bearing_deg", "bin_distance_cm", "bin_bearing_deg",
                                             "pixel", "image_tokens", "context", "plan", "expert")}
    bar = tqdm(total=len(TASKS) * len(seeds), desc=desc, unit="layout", file=sys.stderr)
    for task in TASKS:
        env = make_env(task, image_size=224, depth=False, segmentation=True)  # the eval's render size
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            order, _ = order_cameras(obs, meta.get("camera_keys"), norm_tag)
            images = [obs.cameras[name].rgb for name in order]
            target = env.instance.target
            for prefix, name in (("", target), ("bin_", "bin")):
                rel = env.object_pos(name)[:2] - env.kinematics(0).arm_base_xy
                rows[prefix + "distance_cm"].append(100 * float(np.hypot(*rel)))
                rows[prefix + "bearing_deg"].append(float(np.degrees(np.arctan2(rel[1], rel[0]))))
            mask = obs.cameras[order[0]].segmentation == env.scene.object(target).label
            ys, xs = np.nonzero(mask)
            # An object hidden from the front camera has no centre there; NaN keeps the row and says so.
            # Centre and its square terms: perspective makes distance a curved function of the image row.
            cx, cy = (xs.mean() / 224, ys.mean() / 224) if len(xs) else (np.nan, np.nan)
            rows["pixel"].append([cx, cy, cx * cx, cy * cy, cx * cy])
            with torch.inference_mode():
                pv = torch.from_numpy(preprocess_image(images[0], size)[None]).to(model.dtype)
                rows["image_tokens"].append(model.encode_images(pv)[0].float().numpy().reshape(-1))
                out = model.predict_action(
                    processor=processor, images=images, task=obs.instruction, state=np.asarray(obs.state),
                    norm_tag=norm_tag, inference_action_mode="continuous", num_steps=num_steps,
                    generator=torch.Generator().manual_seed(seed), enable_cuda_graph=False, return_dict=True,
                    return_context=True)
            last = int(np.flatnonzero(out["context_mask"][0])[-1])  # the prompt's last real position
            rows["context"].append(np.concatenate([np.concatenate([k[0, last], v[0, last]])
                                                   for k, v in out["context_kv"]]))
            # The whole planned horizon (the executed part is its start), in robot units like the expert's.
            plan = unnormalize_actions(out["denoising_states_normalized"][-1][0][:, :6], meta["action_stats"],
                                       norm_mode)
            expert = env.expert(chunk_size=30).predict(obs).actions
            ticks = min(len(plan), len(expert))
            rows["plan"].append(plan[:ticks, :6].reshape(-1))
            rows["expert"].append(np.asarray(expert)[:ticks, :6].reshape(-1))
            bar.update()
        env.close()
    bar.close()
    width = min(len(r) for r in rows["plan"])  # every chunk the same length in practice; keep the common part
    rows["plan"] = [r[:width] for r in rows["plan"]]
    rows["expert"] = [r[:width] for r in rows["expert"]]
    return {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano", help="Nano checkpoint directory")
    p.add_argument("--fit-seeds", type=int, default=100, help="layouts per task to fit the probes on")
    p.add_argument("--fit-first-seed", type=int, default=0, help="below 10000: the training data's layouts")
    p.add_argument("--test-seeds", type=int, default=50, help="held-out layouts per task (seeds from 10000)")
    p.add_argument("--num-steps", type=int, default=None, help="Euler steps (default: the checkpoint's own)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    if a.fit_first_seed + a.fit_seeds > 10000:
        raise SystemExit("--fit-first-seed + --fit-seeds must stay below 10000: the held-out layouts start there")

    import torch

    from molmoact2.models.nano.policy import load_nano

    torch.set_num_threads(a.threads)
    policy = load_nano(a.checkpoint)
    fit = collect(policy.model, policy.processor, policy.norm_tag,
                  range(a.fit_first_seed, a.fit_first_seed + a.fit_seeds), a.num_steps, "fit layouts")
    test = collect(policy.model, policy.processor, policy.norm_tag, range(10000, 10000 + a.test_seeds),
                   a.num_steps, "held-out layouts")

    sources = (("the object's centre in the front image (perfect detector)", "pixel"),
               ("front image tokens (vision output)", "image_tokens"),
               ("LM context the expert reads, last prompt position, all layers", "context"),
               ("Nano's action chunk (the plan)", "plan"),
               ("the scripted expert's first chunk (ceiling)", "expert"))
    print(f"\n{a.checkpoint}: {len(TASKS)} tasks x {a.fit_seeds} layouts (seeds {a.fit_first_seed}–"
          f"{a.fit_first_seed + a.fit_seeds - 1}) to fit, x {a.test_seeds} held-out (10000–{9999 + a.test_seeds}) "
          f"to score; ridge regression, R^2 on the held-out layouts (1 = exact, 0 = no better than the mean)\n")
    print("| source | dims | named object: distance from the base | bearing | the bin: distance | bearing |")
    print("|---|---|---|---|---|---|")
    for label, key in sources:
        ok_fit = ~np.isnan(fit[key]).any(1)
        ok_test = ~np.isnan(test[key]).any(1)
        cells = [f"{ridge_r2(fit[key][ok_fit], fit[y][ok_fit], test[key][ok_test], test[y][ok_test]):.2f}"
                 for y in ("distance_cm", "bearing_deg", "bin_distance_cm", "bin_bearing_deg")]
        if key == "pixel":  # the named object's pixels say nothing of the bin's place
            cells[2:] = ["–", "–"]
        hidden = "" if ok_test.all() else f" ({(~ok_test).sum()} held-out layouts without it left out)"
        print(f"| {label}{hidden} | {fit[key].shape[1]} | " + " | ".join(cells) + " |")
    d = test["distance_cm"]
    b = test["bin_distance_cm"]
    print(f"\nheld-out named objects: distance {d.min():.0f}–{d.max():.0f} cm (sd {d.std():.1f}), bearing sd "
          f"{test['bearing_deg'].std():.0f} degrees; the bin: {b.min():.0f}–{b.max():.0f} cm (sd {b.std():.1f}), "
          f"bearing sd {test['bin_bearing_deg'].std():.0f} degrees")


if __name__ == "__main__":
    main()
