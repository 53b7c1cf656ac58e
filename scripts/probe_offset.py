"""Does the action expert know where the named object is from the jaw? The offset loss's channels, read back.

    .venv/bin/python scripts/probe_offset.py --checkpoint /tmp/off05 \
        --train-data /tmp/nano_data /tmp/nano_contrast /tmp/tk_touch --data /tmp/nano_heldout

`train nano --offset-weight` (molmoact2/models/nano/offset.py) teaches three channels of the expert's last block to
carry the object-minus-jaw vector at each chunk step. This reads them at chunk step 0 (the observation's moment)
for `--frames` random demo frames (seed 0) of the training caches and of a held-out cache, at two flow times: t = 0
(the first Euler step, from pure noise: what the expert knows before any action is drawn) and t = 0.8 (near the
last step), and turns them back into centimetres with the training caches' standardization (the one training
used). Printed per cache and task: the median error of that vector (3-D, cm) and, for scale, the median error of
guessing the training frames' mean vector for every frame, the median true distance, and the error on the frames
where the jaw is still 3 cm or more from the object (the approach; a carried object sits about 1 cm away). A checkpoint trained without the loss has no meaning in
those channels; its row is the "nothing learned" reference.

`--closed-loop N` then asks the same on the policy's OWN states: N pick_place layouts from `--first-seed`, the
checkpoint driving (continuous, its own settings), and at every query the channels are read (t = 0) from the very
observation the policy acts on and compared with the simulator's object-minus-jaw there, split at the first close
of the jaw (after a missed grasp the arm is far from anything a demo showed). Demo frames are where the
expert was trained; the closed loop is where it has to be right.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIMES = (0.0, 0.8)


def _expert_reader(model, batch):
    """One language-model pass over a collated batch; returns `read(x_t, t) -> [B, 3]`, the expert's designated
    channels at chunk step 0 (standardized units) for noisy chunks x_t at flow time t."""
    import torch

    from molmoact2.models.nano.offset import OFFSET_CHANNELS, ExpertStream

    expert = model.action_expert
    cache = model.new_cache()
    model.forward(batch["input_ids"], batch["attention_mask"], batch.get("pixel_values"), cache=cache)
    projected = expert.project_contexts([cache.context(layer) for layer in range(len(expert.blocks))])
    ctx_mask = batch["attention_mask"].bool() & ~batch["hide_from_expert"]

    def read(x_t, t: float) -> np.ndarray:
        with ExpertStream(expert) as grabbed:
            expert(x_t, torch.full((len(x_t),), t), projected, ctx_mask)
        return grabbed.stream[:, 0, :OFFSET_CHANNELS].float().numpy()

    return read


def read_offsets_cm(policy, data, picks: list[tuple[int, int]], mean: np.ndarray, sd: np.ndarray,
                    batch_size: int = 16) -> dict[float, np.ndarray]:
    """Per flow time: the expert's decoded object-minus-jaw [len(picks), 3] (cm) at chunk step 0."""
    import torch

    from molmoact2.models.nano.train_step import build_example, collate

    model, proc = policy.model, policy.processor
    gen = torch.Generator().manual_seed(0)
    out = {t: [] for t in TIMES}
    with torch.inference_mode():
        for k in range(0, len(picks), batch_size):
            batch = collate([build_example(model, proc, **data.frame_inputs("action", e, f))
                             for e, f in picks[k:k + batch_size]], proc)
            read = _expert_reader(model, batch)
            actions = batch["actions"]
            noise = torch.randn(actions.shape, generator=gen)
            for t in TIMES:
                out[t].append((read((1 - t) * noise + t * actions, t) * sd + mean) * 100)
    return {t: np.concatenate(v) for t, v in out.items()}


class _Believer:
    """Wraps a NanoPolicy: before each query, reads the expert's offset channels from the same observation and
    notes them beside the simulator's truth."""

    def __init__(self, policy, env, mean: np.ndarray, sd: np.ndarray) -> None:
        from molmoact2.sim.expert import GRIP_OPEN

        self.policy, self.env, self.mean, self.sd = policy, env, mean, sd
        self.half_open = GRIP_OPEN / 2
        self.rows: list[tuple[np.ndarray, np.ndarray, bool]] = []  # (belief_cm, truth_cm, before the first close)
        self.opened = self.closed = False

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def reset(self) -> None:
        self.opened = self.closed = False
        self.policy.reset()

    def predict(self, obs):
        import torch

        from molmoact2.models.hf import order_cameras
        from molmoact2.models.nano.train_step import build_example, collate

        p, env = self.policy, self.env
        order, _ = order_cameras(obs, p.meta.get("camera_keys"), p.norm_tag)
        ex = build_example(p.model, p.processor, style="action", images=[obs.cameras[c].rgb for c in order],
                           task=obs.instruction, state=np.asarray(obs.state), norm_tag=p.norm_tag,
                           actions=np.zeros((30, 6), np.float32))
        batch = collate([ex], p.processor)
        with torch.inference_mode():
            noise = torch.randn(batch["actions"].shape, generator=torch.Generator().manual_seed(len(self.rows)))
            z = _expert_reader(p.model, batch)(noise, 0.0)[0]
        state = np.asarray(obs.state, np.float32)
        # home is shut, so the first close is the first shut jaw after it had opened
        self.opened |= bool(state[5] > self.half_open)
        self.closed |= self.opened and bool(state[5] < self.half_open)
        jaw = env.kinematics(0).path_world(state[None, :6])[0]
        self.rows.append(((z * self.sd + self.mean) * 100, (env.object_pos(env.instance.target) - jaw) * 100,
                          not self.closed))
        return p.predict(obs)


def closed_loop(checkpoint: str, mean: np.ndarray, sd: np.ndarray, layouts: int, first_seed: int) -> None:
    from tqdm.auto import tqdm

    from molmoact2.models.nano.policy import load_nano
    from molmoact2.runner import guard_for_env, run_episode
    from molmoact2.sim import make_env

    env = make_env("pick_place", image_size=224, depth=False, segmentation=False)  # the eval's render size
    believer = _Believer(load_nano(checkpoint, seed=0), env, mean, sd)
    for seed in tqdm(range(first_seed, first_seed + layouts), desc="closed loop", unit="layout", file=sys.stderr):
        for _ in run_episode(believer, env, guard_for_env(env, on_limit="clip"), seed=seed, observe_every_tick=False):
            pass
    env.close()
    belief, truth, before = (np.array(x) for x in zip(*believer.rows))
    dist = np.linalg.norm(truth, axis=1)
    print(f"closed loop, pick_place seeds {first_seed}-{first_seed + layouts - 1}: {len(dist)} queries, the policy's "
          f"own states; read at t = 0")
    print("| queries where the jaw is | queries | median 3-D error (cm) | median believed distance (cm) | "
          "median true distance (cm) | mean guess error (cm) |")
    print("|---|---|---|---|---|---|")
    for name, sel in (("before the first close, 3 cm or more from the object", before & (dist >= 3.0)),
                      ("before the first close, within 3 cm", before & (dist < 3.0)),
                      ("after the first close", ~before), ("anywhere", dist >= 0)):
        if not sel.any():
            continue
        err = np.linalg.norm(belief[sel] - truth[sel], axis=1)
        print(f"| {name} | {int(sel.sum())} | {np.median(err):.1f} | {np.median(np.linalg.norm(belief[sel], axis=1)):.1f}"
              f" | {np.median(dist[sel]):.1f} | {np.median(np.linalg.norm(mean * 100 - truth[sel], axis=1)):.1f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--train-data", nargs="+", required=True, help="the caches the checkpoint trained on")
    p.add_argument("--data", required=True, help="a held-out demo cache (train data --first-seed 10000 ...)")
    p.add_argument("--frames", type=int, default=400, help="random frames per cache (seed 0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--closed-loop", type=int, default=0, metavar="N", help="also N pick_place layouts driven by the "
                   "checkpoint, the channels read at every query (0 = off)")
    p.add_argument("--first-seed", type=int, default=90000, help="first layout of --closed-loop")
    a = p.parse_args(argv)

    import torch

    from molmoact2.models.nano.offset import standardizer
    from molmoact2.models.nano.policy import load_nano
    from molmoact2.training.nano_examples import NanoTrainData

    torch.set_num_threads(a.threads)
    policy = load_nano(a.checkpoint)
    train = NanoTrainData.load(a.train_data, progress=False)
    mean, sd = standardizer(ep["target_offset_m"] for ep in train.episodes)  # as use_offset() computes it
    held = NanoTrainData.load(a.data, progress=False)
    print(f"{a.checkpoint}: object-minus-jaw at chunk step 0, median 3-D error (cm) over {a.frames} random frames "
          f"per cache (seed 0); 'mean guess' = the training frames' mean vector for every frame")
    print("| cache | task | frames | t = 0 | t = 0.8 | mean guess | median distance | t = 0.8, jaw 3 cm or more away "
          "(frames) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, data in (("training", train), ("held-out", held)):
        rng = np.random.default_rng(0)
        rows = rng.choice(len(data.index), size=min(a.frames, len(data.index)), replace=False)
        picks = [(int(e), int(f)) for e, f in data.index[rows]]
        truth_cm = np.array([data.episodes[e]["target_offset_m"][f] for e, f in picks]) * 100
        got = read_offsets_cm(policy, data, picks, mean, sd)
        tasks = [data.meta["episodes"][e]["task"] for e, _ in picks]
        groups = defaultdict(list)
        for i, task in enumerate(tasks):
            groups[task].append(i)
            groups["all"].append(i)
        for task in sorted(groups, key=lambda k: (k == "all", k)):
            idx = np.array(groups[task])
            err = {t: np.median(np.linalg.norm(got[t][idx] - truth_cm[idx], axis=1)) for t in TIMES}
            guess = np.median(np.linalg.norm(mean * 100 - truth_cm[idx], axis=1))
            dist_cm = np.linalg.norm(truth_cm[idx], axis=1)
            far = idx[dist_cm >= 3.0]  # the approach, not the carry (the object in the jaw is ~1 cm away)
            far_err = np.median(np.linalg.norm(got[0.8][far] - truth_cm[far], axis=1)) if len(far) else float("nan")
            print(f"| {name} | {task} | {len(idx)} | {err[0.0]:.1f} | {err[0.8]:.1f} | {guess:.1f} | "
                  f"{np.median(dist_cm):.1f} | {far_err:.1f} ({len(far)}) |")
    if a.closed_loop:
        closed_loop(a.checkpoint, mean, sd, a.closed_loop, a.first_seed)


if __name__ == "__main__":
    main()
