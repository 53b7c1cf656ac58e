"""The shipped Nano-fast (`assets/nano_fast/`, spec `nano-fast`): the shipped Nano with its flow expert distilled to
2 Euler steps. Its language model and vision are Nano's bit for bit, it acts in closed loop, and its compiled call
gives the eager call's chunk (README, Benchmarks: the >= 50 Hz continuous call)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import one_thread_fixture  # noqa: E402
from molmoact2.models.registry import REPO_NANO_DIR, REPO_NANO_FAST_DIR  # noqa: E402

one_thread = one_thread_fixture()
FAST = REPO_NANO_FAST_DIR
pytestmark = pytest.mark.skipif(not (FAST / "config.json").is_file(), reason=f"no Nano-fast checkpoint at {FAST}")
SEEDS = (10001, 10002, 10003)  # held out: training data uses seeds from 0


def test_layout_two_steps_and_only_the_expert_differs_from_nano():
    from safetensors import safe_open

    assert (FAST / "model.safetensors").stat().st_size < 25 * 2**20
    cfg = json.loads((FAST / "config.json").read_text())
    assert cfg["flow_matching_num_steps"] == 2
    args = json.loads((FAST / "training_args.json").read_text())
    assert args["config"]["student_steps"] == 2 and args["config"]["teacher_steps"] == 5
    assert args["argv"][1:3] == ["train", "distill-expert"]
    differ = set()
    with safe_open(str(FAST / "model.safetensors"), "pt") as fast, \
            safe_open(str(REPO_NANO_DIR / "model.safetensors"), "pt") as nano:
        assert set(fast.keys()) == set(nano.keys())
        for key in fast.keys():
            a, b = fast.get_tensor(key), nano.get_tensor(key)
            assert a.dtype == torch.float16
            if not torch.equal(a, b):
                differ.add(key)
    assert differ and all(k.startswith("action_expert.") for k in differ), sorted(differ)[:5]


@pytest.fixture(scope="module")
def policy():
    from molmoact2.models.registry import load_policy

    return load_policy("nano-fast", seed=0)


def test_closed_loop_touch_succeeds_with_two_steps(policy):
    from molmoact2.evaluation.closed_loop import rollout
    from molmoact2.sim import make_env

    env = make_env("touch", image_size=224, depth=False, segmentation=False)
    records = [rollout(policy, env, seed) for seed in SEEDS]
    env.close()
    assert all(r["error"] is None and r["refusals"] == 0 for r in records), records
    assert sum(r["success"] for r in records) >= 1, records


def test_compiled_policy_gives_the_eager_chunk_and_its_step_says_so(policy):
    from molmoact2.models.nano.compiled import enable_compiled_inference
    from molmoact2.models.nano.policy import NanoPolicy
    from molmoact2.sim import make_env

    env = make_env("pick_place", image_size=224, depth=False, segmentation=False)
    obs, _ = env.reset(SEEDS[0])
    env.close()
    eager = NanoPolicy(policy.model, policy.processor, seed=0).predict(obs)
    try:
        compiled = NanoPolicy(policy.model, policy.processor, seed=0, compiled=True)  # the first call compiles
        step = compiled.predict(obs)
    finally:
        enable_compiled_inference(policy.model, False)
    assert step.info["compiled_stages"] == ["vision", "prefill", "expert"] and "compiled_stages" not in eager.info
    assert step.info["forward_calls"]["action"] == 2 and step.denoising_states.shape[0] == 3  # x0 + 2 Euler steps
    diff = np.abs(step.denoising_states - eager.denoising_states).max()
    assert diff < 1e-2, diff  # robot units (degrees)
