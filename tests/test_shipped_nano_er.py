"""The shipped Nano-ER (`assets/nano_er/`, `load_policy("nano-er")`): Nano taught to answer spatial questions.
Its checkpoint layout, and its points graded against the simulator's segmentation on held-out layouts, beside
the action model's on the same questions.

The thresholds sit below what `molmoact2 eval nano --checkpoint assets/nano_er` measures (README, "Nano-ER") and
far above what a model that cannot find objects scores, so a broken checkpoint, the wrong weights behind the spec
or a broken question path fails here. The scenes are fixed held-out seeds; greedy answers are deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import one_thread_fixture  # noqa: E402
from molmoact2.models.registry import REPO_NANO_ER_DIR  # noqa: E402

one_thread = one_thread_fixture()
ER = REPO_NANO_ER_DIR
pytestmark = pytest.mark.skipif(not (ER / "config.json").is_file(), reason=f"no Nano-ER checkpoint at {ER}")
SEEDS = (10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008)  # held out: the training layouts are below 10000


def test_checkpoint_layout_and_size():
    from safetensors import safe_open

    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "norm_stats.json",
                 "training_args.json", "vision_pretrain.json", "README.md"):
        assert (ER / name).is_file(), name
    assert (ER / "model.safetensors").stat().st_size < 25 * 2**20
    with safe_open(str(ER / "model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
    args = json.loads((ER / "training_args.json").read_text())
    assert args["config"]["ground_weight"] > 0 and args["config"]["mix"]["action"] == 0


def _held_out_questions():
    """(front rgb, object name, {name: mask}) for every visible movable object of the held-out touch layouts."""
    from molmoact2.sim import make_env

    out = []
    for seed in SEEDS:
        env = make_env("touch", image_size=224, depth=False, segmentation=True)
        try:
            obs, _ = env.reset(seed)
            front = obs.cameras["front"]
            masks = {o.name: front.segmentation == o.label for o in env.scene.objects}
        finally:
            env.close()
        masks = {name: m for name, m in masks.items() if m.any()}
        out += [(front.rgb, name, masks) for name in masks if name != "bin"]
    return out


def _grade(policy, questions) -> tuple[int, int]:
    """(points inside the named object's mask, points nearer the named object than any other object's pixels)."""
    from molmoact2 import spatial

    inside = nearest = 0
    for rgb, name, masks in questions:
        text = policy.ask([rgb], spatial.point_prompt(f"the {name}")).answer_text or ""
        h, w = rgb.shape[:2]
        points = spatial.parse_answer(text).points_px(width=w, height=h)
        if not len(points):
            continue
        x, y = points[0]
        col, row = spatial.pixel_index(x, y, width=w, height=h)
        inside += bool(masks[name][row, col])
        distance = {}
        for other, mask in masks.items():
            rows, cols = np.nonzero(mask)
            distance[other] = float(np.min(np.hypot(cols + 0.5 - x, rows + 0.5 - y)))
        nearest += min(distance, key=distance.get) == name
    return inside, nearest


def test_points_at_the_named_object_more_precisely_than_nano():
    from molmoact2.models.registry import load_policy

    questions = _held_out_questions()
    er_inside, er_nearest = _grade(load_policy("nano-er", seed=0), questions)
    nano_inside, nano_nearest = _grade(load_policy(f"nano:{ER.parent / 'nano'}", seed=0), questions)
    # eval qa (README; 428 held-out questions at movable objects): inside the named object's mask Nano-ER 80%
    # (70% until 2026-12-06), the shipped Nano (trained from the earlier Nano-ER to act, then five DAgger rounds)
    # 49%, the first Nano 6%; the object nearest the point is the named one 94% / 90% / 20% (chance 26%). Measured
    # here on these 20 questions: Nano-ER 15 inside / 19 nearest (2026-12-06; the earlier one 13 / 19), the shipped
    # Nano 8 / 17 (DAgger round 3 10 / 17, before the rounds 7 / 17), the first Nano (git 6573175) 2 / 5. Twenty questions separate 70% from 49% only loosely, so
    # the test asks for strictly more hits, not the held-out margin.
    assert len(questions) >= 15
    assert er_inside >= 8 and er_inside > nano_inside, (er_inside, nano_inside)
    assert er_nearest >= 14 and nano_nearest >= 12, (er_nearest, nano_nearest)


def test_number_decoding_probe_scores_whole_values_like_one_sequence_at_a_time():
    """scripts/probe_number_decoding.py batches values of different token lengths (' 694' is 4 tokens, ' 744' 3)
    padded on the right: each batched score must equal that value's log-probability from its own forward, and
    the re-decoded value must be the best-scoring one."""
    import importlib.util

    from _nano_fixtures import image
    from molmoact2.models.registry import load_policy

    path = ER.parents[1] / "scripts" / "probe_number_decoding.py"
    spec = importlib.util.spec_from_file_location("probe_number_decoding", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    policy = load_policy("nano-er", seed=0)
    model, processor = policy.model, policy.processor

    def encode(text):
        return processor.tokenizer.encode(text, add_special_tokens=False)

    content = [{"type": "image", "image": image(3, 96, 96)}, {"type": "text", "text": "Point to the red cube"}]
    inputs = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=True,
                                           add_generation_prompt=True, return_dict=True)
    prompt = inputs["input_ids"][0].tolist() + encode('<points coords="1 1')
    pixels = inputs["pixel_values"]
    pixels = pixels[None] if pixels.dim() == 3 else pixels
    values = [694, 744, 812, 500]
    assert len({len(encode(f" {v}")) for v in values}) > 1  # the padding is exercised
    with torch.no_grad():
        batched = mod.score_values(model, prompt, pixels, values, encode)
        for v, got in zip(values, batched):
            toks = encode(f" {v}")
            seq = torch.tensor([prompt + toks])
            logp = model.forward(seq, torch.ones_like(seq), pixels, logits_to_keep=len(toks) + 1)["logits"]
            logp = logp.log_softmax(-1)[0]
            alone = sum(float(logp[j, t]) for j, t in enumerate(toks))
            assert abs(float(got) - alone) < 1e-3, (v, float(got), alone)
        best, mean = mod.redecode(model, prompt, pixels, 700, 3, encode)
        scores = mod.score_values(model, prompt, pixels, list(range(697, 704)), encode)
    assert best == 697 + int(scores.argmax()) and 697 <= mean <= 703
