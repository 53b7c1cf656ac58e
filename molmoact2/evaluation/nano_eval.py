"""The whole Nano evaluation in `jobs` worker processes (one torch thread each), as one JSON record.

    cfg = EvalConfig(checkpoint="assets/nano", heldout="/tmp/nano_heldout", seeds_per_task=50)
    result = evaluate(cfg)           # {"closed_loop": {...}, "offline": {...}, "spatial": {...}, ...}

Work items (closed-loop episodes, held-out episodes, spatial questions) are independent, so they are
spread over processes; every item seeds its own randomness, so the result does not depend on `jobs`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from molmoact2.evaluation.report import EVAL_FORMAT
from molmoact2.models.act_protocol import MAX_NUM_STEPS as MAX_FLOW_STEPS  # Euler steps one may ask for
from molmoact2.models.flow_noise import check_noise_scale, check_plan_samples
from molmoact2.training.nano_data import SINGLE_ARM_TASKS

CLOSED_LOOP_MODES = ("continuous", "think", "discrete")
HELD_OUT_FIRST_SEED = 10000  # training data uses seeds from 0; everything evaluated here starts at 10000


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str
    heldout: str | None = None  # data cache of held-out seeds for the open-loop parts (None: skip them)
    action_tokenizer: str | None = None  # default: assets/openfast_so101_sim
    tasks: tuple[str, ...] = SINGLE_ARM_TASKS
    modes: tuple[str, ...] = ("continuous", "think")
    seeds_per_task: int = 50
    first_seed: int = HELD_OUT_FIRST_SEED
    image_size: int = 224  # the app's render size, which the training frames were resized from
    max_questions: int | None = None  # spatial questions graded (None: all in the held-out cache)
    jobs: int = 2
    seed: int = 0
    on_limit: str = "clip"  # the guard's answer to joint targets past the limits (clip and count, or refuse)
    # Also run every rollout's layout once more with the instruction naming another of its objects: does the
    # arm follow the words, or go where the picture alone suggests? (report: "words vs layout")
    swap_targets: bool = False
    # Actions executed per policy query (None: the checkpoint's norm stats' n_action_steps). Fewer means the
    # policy looks again sooner (more queries per episode, slower evaluation). `evaluate` records the number used.
    n_action_steps: int | None = None
    # Euler steps of the flow expert (None: the checkpoint's `flow_matching_num_steps`). `evaluate` records the
    # number actually used, so a record says how its actions were integrated even after a config changes.
    num_steps: int | None = None
    # Continuous and Think policies pin each chunk's first k actions to the previous plan's (NanoPolicy
    # `carry_steps`, 0 = off): consecutive chunks continue one another instead of each drawing its own mode.
    carry_steps: int = 0
    # Multiplier of the flow expert's start noise (continuous and Think; 1 = as trained, 0 = its mean, which
    # makes every plan deterministic and the noise seed irrelevant).
    noise_scale: float = 1.0
    # Start draws per flow call, the medoid plan kept (continuous and Think; 1 = one draw, as the real model).
    plan_samples: int = 1
    # Continuous and Think ask every K ticks and execute each tick's weighted mean over every plan covering it
    # (`TemporalEnsemblePolicy`, ACT's temporal ensembling; 0 = off: each plan runs its n_action_steps alone).
    # The wrapped policy then returns its whole 30-action plan per query.
    temporal_ensemble: int = 0
    ensemble_decay: float = 0.01  # per tick of a plan's start after the oldest plan's: ACT's m (older weigh more)
    # Continuous and Think cut each chunk at the plan's first open -> shut edge of the gripper (>= 5 ticks out) and
    # ask again there, so the grasp is decided from a picture at the object (`ReplanBeforeClosePolicy`).
    replan_before_close: bool = False
    # Discrete mode decodes its OpenFAST ids under their length grammar (closed loop and open loop), so every chunk
    # decodes; False = unconstrained, as the real model (about half of Nano's chunks then fail to decode).
    constrain_action_tokens: bool = False
    # Evaluate on the layouts the training data used (seeds below 10000, normally from 0) instead of held-out
    # ones: a fitting check, never a quality figure. Does the model solve, and predict, the demos it trained on?
    # Then `heldout` names the training cache (its seeds must be < 10000) and the report's title says so.
    training_layouts: bool = False
    # Run vision, prefill and the flow expert through torch.compile (molmoact2.models.nano.compiled): the same
    # numbers up to float summation order, faster calls; each worker compiles its shapes first (minutes in all).
    compiled: bool = False

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in CLOSED_LOOP_MODES]
        if bad:
            raise ValueError(f"modes: expected a subset of {CLOSED_LOOP_MODES}, got {bad}")
        if self.training_layouts:
            if self.first_seed < 0 or self.first_seed + self.seeds_per_task > HELD_OUT_FIRST_SEED:
                raise ValueError(f"first_seed: training layouts are seeds 0..{HELD_OUT_FIRST_SEED - 1}, got "
                                 f"{self.first_seed}..{self.first_seed + self.seeds_per_task - 1}")
        elif self.first_seed < HELD_OUT_FIRST_SEED:
            raise ValueError(f"first_seed: held-out seeds start at {HELD_OUT_FIRST_SEED} (training uses lower seeds), "
                             f"got {self.first_seed}")
        if self.on_limit not in ("clip", "refuse"):
            raise ValueError(f"on_limit: expected 'clip' or 'refuse', got {self.on_limit!r}")
        if self.n_action_steps is not None and not 1 <= self.n_action_steps <= 30:
            raise ValueError(f"n_action_steps: expected 1..30 (the action horizon), got {self.n_action_steps}")
        if self.num_steps is not None and not 1 <= self.num_steps <= MAX_FLOW_STEPS:
            raise ValueError(f"num_steps: expected 1..{MAX_FLOW_STEPS} Euler steps, got {self.num_steps}")
        if not 0 <= self.carry_steps < 30:
            raise ValueError(f"carry_steps: expected 0 (off) .. 29 actions of the 30-action horizon, "
                             f"got {self.carry_steps}")
        check_noise_scale(self.noise_scale)
        check_plan_samples(self.plan_samples)
        if not 0 <= self.temporal_ensemble <= 30:
            raise ValueError(f"temporal_ensemble: expected 0 (off) or 1..30 ticks between queries, "
                             f"got {self.temporal_ensemble}")
        if self.temporal_ensemble and self.replan_before_close:
            raise ValueError("replan_before_close: not with temporal_ensemble (an ensembled chunk is no one plan)")
        if self.temporal_ensemble and self.n_action_steps not in (None, 30):
            raise ValueError(f"temporal_ensemble: every query's whole 30-action plan is ensembled; "
                             f"n_action_steps must be left unset or 30, got {self.n_action_steps}")
        if not (np.isfinite(self.ensemble_decay) and self.ensemble_decay >= 0):
            raise ValueError(f"ensemble_decay: expected a finite number >= 0, got {self.ensemble_decay}")
        if self.seeds_per_task < 0 or self.jobs < 1:
            raise ValueError(f"seeds_per_task must be >= 0 and jobs >= 1, got {self.seeds_per_task}, {self.jobs}")


# ---- worker side -------------------------------------------------------------------------------
_W: dict[str, Any] = {}


def _init_worker(cfg: EvalConfig) -> None:
    import torch

    torch.set_num_threads(1)  # `jobs` processes share the cores; one thread each avoids oversubscription
    from molmoact2.models.hf import load_action_tokenizer
    from molmoact2.models.nano.policy import NanoPolicy, load_nano
    from molmoact2.training.nano_trainer import DEFAULT_ACTION_TOKENIZER

    base = load_nano(cfg.checkpoint)
    if cfg.compiled:  # every policy of this worker shares base.model, so once is enough
        from molmoact2.models.nano.compiled import enable_compiled_inference

        enable_compiled_inference(base.model)
    tok = load_action_tokenizer(cfg.action_tokenizer or str(DEFAULT_ACTION_TOKENIZER))
    common = dict(seed=cfg.seed, checkpoint_dir=cfg.checkpoint, n_action_steps=cfg.n_action_steps,
                  num_steps=cfg.num_steps)
    _W["tokenizer"] = tok
    _W["model"], _W["processor"] = base.model, base.processor
    flow = dict(carry_steps=cfg.carry_steps) if cfg.carry_steps else {}  # the discrete mode has no plan to carry
    if cfg.noise_scale != 1.0:
        flow["noise_scale"] = cfg.noise_scale  # nor any start noise
    if cfg.plan_samples != 1:
        flow["plan_samples"] = cfg.plan_samples
    if cfg.temporal_ensemble:
        from molmoact2.models.temporal_ensemble import TemporalEnsemblePolicy

        flow_common = dict(common, n_action_steps=30)  # the wrapper ensembles whole plans

        def flow_policy(**kw: Any) -> Any:
            return TemporalEnsemblePolicy(NanoPolicy(base.model, base.processor, **flow_common, **flow, **kw),
                                          cfg.temporal_ensemble, cfg.ensemble_decay)
    elif cfg.replan_before_close:
        from molmoact2.models.replan_close import ReplanBeforeClosePolicy

        def flow_policy(**kw: Any) -> Any:
            return ReplanBeforeClosePolicy(NanoPolicy(base.model, base.processor, **common, **flow, **kw))
    else:
        def flow_policy(**kw: Any) -> Any:
            return NanoPolicy(base.model, base.processor, **common, **flow, **kw)
    _W["policies"] = {
        "continuous": flow_policy(),
        "think": flow_policy(depth_reasoning=True),
        "discrete": NanoPolicy(base.model, base.processor, mode="discrete", action_tokenizer=tok,
                               constrain_action_tokens=cfg.constrain_action_tokens, **common),
    }
    _W["envs"] = {}
    _W["cfg"] = cfg
    if cfg.heldout:
        from molmoact2.training.nano_examples import NanoTrainData

        _W["data"] = NanoTrainData.load(cfg.heldout, progress=False)


def _env(task: str):
    if task not in _W["envs"]:
        from molmoact2.sim import make_env

        # Nano looks at RGB only: no depth or segmentation rendering in the loop.
        _W["envs"][task] = make_env(task, image_size=_W["cfg"].image_size, depth=False, segmentation=False)
    return _W["envs"][task]


def _run_item(item: tuple) -> tuple[tuple, dict[str, Any]]:
    from molmoact2.evaluation import closed_loop, offline

    kind = item[0]
    if kind == "rollout":
        mode, task, seed = item[1:4]
        target = closed_loop.other_target(_env(task), seed) if item[4:] == ("other",) else None
        if item[4:] == ("other",) and target is None:  # one candidate in this layout: nothing to swap
            return item, {"task": task, "seed": seed, "skipped": "the layout has one candidate object"}
        return item, closed_loop.rollout(_W["policies"][mode], _env(task), seed, on_limit=_W["cfg"].on_limit,
                                         target=target)
    if kind == "episode":
        return item, offline.episode_metrics(_W["model"], _W["processor"], _W["data"], item[1],
                                             action_tokenizer=_W["tokenizer"], seed=_W["cfg"].seed,
                                             num_steps=_W["cfg"].num_steps,
                                             constrain_action_tokens=_W["cfg"].constrain_action_tokens)
    if kind == "qa":
        return item, offline.qa_metrics(_W["policies"]["continuous"], _W["data"], item[1])
    raise ValueError(f"unknown work item {item!r}")


# ---- main side ---------------------------------------------------------------------------------
def work_items(cfg: EvalConfig, heldout_meta: dict[str, Any] | None, questions: list[int]) -> list[tuple]:
    items: list[tuple] = []
    if heldout_meta is not None:
        items += [("episode", i) for i in range(len(heldout_meta["episodes"]))]
        items += [("qa", i) for i in questions]
    # Interleave modes and tasks so a partial run (Ctrl-C) still covers all of them.
    for k in range(cfg.seeds_per_task):
        for task in cfg.tasks:
            for mode in cfg.modes:
                items.append(("rollout", mode, task, cfg.first_seed + k))
                if cfg.swap_targets:
                    items.append(("rollout", mode, task, cfg.first_seed + k, "other"))
    return items


def _check_heldout(cfg: EvalConfig) -> tuple[dict[str, Any] | None, list[int]]:
    """The held-out cache's meta and the indices of the questions to grade (boxes are not graded)."""
    if not cfg.heldout:
        return None, []
    import json

    from molmoact2.training.nano_data import load_meta

    meta = load_meta(cfg.heldout)
    low = min(e["seed"] for e in meta["episodes"])
    high = max(e["seed"] for e in meta["episodes"])
    if cfg.training_layouts and high >= HELD_OUT_FIRST_SEED:
        raise ValueError(f"{cfg.heldout}: contains seed {high}; with training_layouts (--training-layouts) the cache "
                         f"must be training data (seeds < {HELD_OUT_FIRST_SEED}, e.g. the one the checkpoint trained on)")
    if not cfg.training_layouts and low < HELD_OUT_FIRST_SEED:
        raise ValueError(f"{cfg.heldout}: contains seed {low}; held-out data must use seeds >= {HELD_OUT_FIRST_SEED} "
                         f"(molmoact2 train data --first-seed {HELD_OUT_FIRST_SEED} ...)")
    qa = json.loads((Path(cfg.heldout) / "qa.json").read_text())
    graded = [i for i, q in enumerate(qa) if q["kind"] != "box"]
    return meta, graded if cfg.max_questions is None else graded[: cfg.max_questions]


def checkpoint_flow_steps(checkpoint: str) -> int:
    """The Euler steps a checkpoint integrates with by default (its config's `flow_matching_num_steps`)."""
    import json

    config = json.loads((Path(checkpoint) / "config.json").read_text())
    steps = config.get("flow_matching_num_steps")
    if not isinstance(steps, int) or not 1 <= steps <= MAX_FLOW_STEPS:
        raise ValueError(f"{checkpoint}/config.json: expected flow_matching_num_steps in 1..{MAX_FLOW_STEPS}, "
                         f"got {steps!r}")
    return steps


def checkpoint_action_steps(checkpoint: str) -> int:
    """Actions a checkpoint's policy executes per query by default (its norm stats' `n_action_steps`; Nano
    checkpoints carry one norm tag, as `NanoPolicy` requires without `norm_tag=`)."""
    import json

    path = Path(checkpoint) / "norm_stats.json"
    found = {tag: meta.get("n_action_steps")
             for tag, meta in json.loads(path.read_text()).get("metadata_by_tag", {}).items()}
    values = list(found.values())
    if len(values) != 1 or not isinstance(values[0], int) or not 1 <= values[0] <= 30:
        raise ValueError(f"{path}: expected one norm tag with n_action_steps in 1..30 (the action horizon), "
                         f"got {found}")
    return values[0]


def weights_sha256(checkpoint: str) -> str | None:
    """Digest of the checkpoint's weights file: records of one set of weights under another path (a run's /tmp
    directory, then `assets/nano`) are recognised as the same weights by `eval luck` and `eval compare-draws`."""
    import hashlib

    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evaluate(cfg: EvalConfig, *, progress: bool = True) -> dict[str, Any]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    from molmoact2.evaluation.report import summarize

    if not (Path(cfg.checkpoint) / "config.json").is_file():
        raise FileNotFoundError(f"eval: {cfg.checkpoint} is not a Nano checkpoint directory (no config.json)")
    if cfg.num_steps is None:
        cfg = replace(cfg, num_steps=checkpoint_flow_steps(cfg.checkpoint))
    if cfg.n_action_steps is None:  # recorded as used, so records stay comparable if the default changes
        # a temporal ensemble mixes whole plans (the wrapped policies return all 30), whatever the checkpoint's default
        cfg = replace(cfg, n_action_steps=30 if cfg.temporal_ensemble else checkpoint_action_steps(cfg.checkpoint))
    meta, questions = _check_heldout(cfg)
    items = work_items(cfg, meta, questions)
    t0 = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {"rollouts": [], "episodes": [], "qa": []}
    key = {"rollout": "rollouts", "episode": "episodes", "qa": "qa"}
    ctx = mp.get_context("spawn")  # fork after torch/MuJoCo initialisation is not safe
    with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=ctx, initializer=_init_worker, initargs=(cfg,)) as pool:
        futures = [pool.submit(_run_item, it) for it in items]
        bar = tqdm(total=len(futures), desc="nano eval", unit="item", file=sys.stderr, disable=not progress)
        try:
            for fut in as_completed(futures):
                item, rec = fut.result()
                if item[0] == "rollout":
                    rec["mode"] = item[1]
                    rec["named"] = "other" if item[4:] == ("other",) else "own"
                results[key[item[0]]].append(rec)
                bar.update(1)
                done = [r for r in results["rollouts"] if r["named"] == "own"]
                if done:
                    bar.set_postfix(success=f"{np.mean([r['success'] for r in done]):.0%}", episodes=len(done))
        finally:
            bar.close()
    for k in results:  # completion order depends on scheduling; the record does not
        results[k].sort(key=lambda r: (r.get("mode", ""), r.get("task", ""), r.get("seed", 0), r.get("named", ""),
                                       r.get("episode", 0), r.get("index", 0)))
    out = {"format": EVAL_FORMAT, "config": asdict(cfg), "checkpoint": os.path.abspath(cfg.checkpoint),
           "weights_sha256": weights_sha256(cfg.checkpoint),
           "wall_minutes": round((time.perf_counter() - t0) / 60, 2), **results}
    if meta is not None:  # the layout-blind floor for the action error (numpy over the cache's actions only)
        from molmoact2.evaluation.offline import clock_baseline_of_cache

        out["action_clock_baseline"] = clock_baseline_of_cache(cfg.heldout)
    out["summary"] = summarize(out)
    return out
