"""Does the direction word steer a push? Same layout, object, state and noise; only "left" / "right" changes.

    rows = probe(lambda env: nano_policy, layouts=20)        # `molmoact2 eval words --directions`
    print(to_markdown(summarize(rows), "assets/nano"))

The closed-loop probe (`scripts/probe_push_direction.py`) says a failed push often went the wrong way; this asks
the question one level down, per policy query, as `words_probe` does for object names:

* two simulators, push_left and push_right, are reset to one layout on which both can push the same object
  (`nano_data.paired_target`), so their pictures and states are identical and only the instruction's direction
  word differs; both are driven with the same actions;
* at each probe point the policy plans a chunk under each instruction with the same noise draw, and a fresh
  scripted expert plans the same number of steps in each world: the reference for where each word should send
  the jaw (at the first frame the expert goes behind the object, on the side opposite the push);
* `toward_asked_m`: how much nearer each word's plan ends to the expert's plan for that word than the other
  word's plan does (mean of both words; 0 for a policy deaf to the word; the expert itself scores
  `expert_apart_m`, the distance between its two plans). `change_word_m` vs `change_noise_m` says whether the
  word changes the plan more than a second noise draw does; `toward_noise_m` is the pull between two noise draws
  under one word: the spread a word effect must beat.

Probe points: the first frame, and after `advance_chunks` chunks of each word's own plan (the push_left plan
driving both worlds, then, from a fresh reset, the push_right plan; through the safety guard, clipped at the
joint limits like `eval nano`): does the word still steer once the arm has taken a side?
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from molmoact2.evaluation.words_probe import _endpoint, _mean_ci, _plan, _toward, cm, drive_worlds, noise_spread

DIRECTION_TASKS = ("push_left", "push_right")


def _expert_endpoint(env: Any, obs: Any, steps: int) -> np.ndarray:
    """Where a fresh scripted expert's first `steps` joint targets from this state leave the jaw."""
    expert = env.expert()
    actions: list[np.ndarray] = []
    while len(actions) < steps:
        actions.extend(expert.act(obs))
    world, _ = env.planned_path(np.asarray(actions[:steps]))
    return world[steps - 1]


def probe_layout(make_policy: Callable[[Any], Any], seed: int, *, advance_chunks: int = 2,
                 noise_seeds: tuple[int, int] = (0, 1), image_size: int = 224) -> list[dict[str, Any]]:
    """Probe rows for one seed (empty if no object can be pushed both ways on one layout of it)."""
    from molmoact2.runner import guard_for_env
    from molmoact2.sim import make_env
    from molmoact2.training.nano_data import paired_target

    envs = [make_env(task, image_size=image_size, depth=False, segmentation=False) for task in DIRECTION_TASKS]
    try:
        target = paired_target(envs[0], envs[1], seed)
        if target is None:
            return []
        policies = [make_policy(env) for env in envs]
        shared = policies[0] is policies[1]
        guard = guard_for_env(envs[0], on_limit="clip")
        rows: list[dict[str, Any]] = []
        # Probe points: the first frame, then after `advance_chunks` chunks of each word's own plan (both worlds
        # driven by it, from a fresh reset): has the arm, once committed to one side, stopped hearing the word?
        for driver in (None, 0, 1):
            obs = [envs[0].reset(seed)[0], envs[1].reset(seed, options={"target": target})[0]]
            obs = drive_worlds(envs, obs, policies[driver or 0], guard, driver=driver or 0,
                               chunks=0 if driver is None else advance_chunks, noise_seed=noise_seeds[0],
                               who=f"direction probe: seed {seed}")
            steps = [_plan(p, o, noise_seeds[0]) for p, o in zip(policies, obs)]
            ends = [_endpoint(env, s) for env, s in zip(envs, steps)]
            refs = [_expert_endpoint(env, o, len(s.actions)) for env, o, s in zip(envs, obs, steps)]
            row = {"seed": int(seed), "target": target, "instructions": [env.instruction for env in envs],
                   "probe_point": "first frame" if driver is None else
                   f"after {advance_chunks} chunks of {DIRECTION_TASKS[driver]}",
                   "expert_apart_m": float(np.linalg.norm(refs[0] - refs[1])),
                   "change_word_m": float(np.linalg.norm(ends[0] - ends[1])),
                   "toward_asked_m": _toward(ends[0], ends[1], refs)}
            if shared and hasattr(policies[0], "seed"):  # a noisy policy: the spread of a second draw
                row |= noise_spread(policies[0], envs[0], obs[0], ends, refs, noise_seeds[1])
            rows.append(row)
        return rows
    finally:
        for env in envs:
            env.close()


def probe(make_policy: Callable[[Any], Any], *, layouts: int = 20, first_seed: int = 10000, advance_chunks: int = 2,
          progress: bool = True) -> list[dict[str, Any]]:
    """Probe `layouts` seeds whose layout hosts both pushes on one object, from `first_seed` (others skipped;
    about one seed in six qualifies)."""
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=layouts, desc="direction probe", unit="layout", disable=not progress)
    done, seed = 0, first_seed
    while done < layouts:
        if seed - first_seed > 20 * layouts + 100:
            raise RuntimeError(f"direction probe: only {done} of {layouts} layouts from seed {first_seed} host both "
                               "pushes on one object")
        got = probe_layout(make_policy, seed, advance_chunks=advance_chunks)
        if got:
            rows += got
            done += 1
            bar.update(1)
        seed += 1
    bar.close()
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per probe point: means with 95% intervals (normal approximation), and how many layouts'
    plans were pulled toward the asked side at all."""
    out: dict[str, Any] = {}
    for point in dict.fromkeys(r["probe_point"] for r in rows):  # in probing order
        rs = [r for r in rows if r["probe_point"] == point]
        s = {key: _mean_ci([r.get(key) for r in rs]) for key in
             ("expert_apart_m", "change_word_m", "change_noise_m", "toward_asked_m", "toward_noise_m")}
        s["pulled_toward_asked"] = int(sum(r["toward_asked_m"] > 0 for r in rs))
        s["layouts"] = len(rs)
        out[point] = s
    return out


def to_markdown(summary: dict[str, Any], name: str = "policy") -> str:
    """One table: rows = probe points, columns in cm (mean ± 95% half-width)."""
    lines = [f"direction probe: {name}", "",
             "| probe point | expert's two plans apart cm | plan change, word swapped cm | plan change, new noise cm | "
             "pull toward the asked side cm | same, two noise draws cm | layouts pulled the asked way |",
             "|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        lines.append(f"| {key} | {cm(s['expert_apart_m'])} | {cm(s['change_word_m'])} | "
                     f"{cm(s['change_noise_m'])} | {cm(s['toward_asked_m'])} | {cm(s['toward_noise_m'])} | "
                     f"{s['pulled_toward_asked']}/{s['layouts']} |")
    return "\n".join(lines)
