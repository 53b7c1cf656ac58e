"""Nano's training data pipeline and `molmoact2 train nano` on one tiny simulator episode.

The dataset is built for real (MuJoCo expert, depth VQ-VAE, MolmoThink buffers, ground-truth QA);
the training runs are a few steps of the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import one_thread_fixture  # noqa: E402
from molmoact2 import spatial  # noqa: E402
from molmoact2 import tokens as T  # noqa: E402

one_thread = one_thread_fixture()
RENDER = 96  # small renders keep the test fast; objects still cover > min_visible_px pixels


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from molmoact2.cli import main

    out = tmp_path_factory.mktemp("nano") / "data"
    assert main(["train", "data", "--out", str(out), "--episodes-per-task", "1", "--tasks", "touch",
                 "--render-size", str(RENDER), "--store-size", "64", "--think-stride", "5",
                 "--qa-frames-per-episode", "2"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["render_size"] == RENDER and [e["task"] for e in meta["episodes"]] == ["touch"]
    return out


@pytest.fixture(scope="module")
def data(data_dir):
    from molmoact2.training.nano_examples import NanoTrainData
    from molmoact2.training.nano_trainer import DEFAULT_ACTION_TOKENIZER

    return NanoTrainData.load(data_dir, action_tokenizer=DEFAULT_ACTION_TOKENIZER, progress=False)


@pytest.fixture(scope="module")
def tiny(data):
    from molmoact2.models.nano.factory import build_random_nano

    return build_random_nano("tiny", seed=0, norm_stats=data.norm_stats)


def _completion(ex) -> list[int]:
    return ex["input_ids"][ex["labels"] != -100].tolist()


def test_cache_layout_norm_stats_and_depth_buffers(data):
    ep = data.episodes[0]
    n = len(ep["action"])
    assert n > 10 and ep["front"].shape == (n, 64, 64, 3) and ep["wrist"].shape == (n, 64, 64, 3)
    assert ep["state"].shape == ep["action"].shape == (n, 6)
    stats = data.norm_stats
    assert stats["format"] == "molmoact2_norm_stats.v1" and stats["norm_mode"] == "q01_q99"
    meta = stats["metadata_by_tag"]["so101_sim_molmoact2"]
    assert np.allclose(meta["action_stats"]["q99"], np.quantile(ep["action"].astype(np.float64), 0.99, axis=0))
    assert np.allclose(meta["state_stats"]["min"], ep["state"].min(0))
    assert meta["n_action_steps"] == 5 and meta["camera_keys"] == ["front", "wrist"]
    # MolmoThink along the query chains (stride 5): chain starts decode everything, later frames carry forward.
    codes, mask, buf = ep["depth_codes"], ep["think_mask"], ep["depth_buffer"]
    assert codes.shape == (n, 100) and codes.min() >= 0 and codes.max() < 128
    assert mask[:5].all() and np.array_equal(buf[:5], codes[:5])
    for t in range(5, n):
        assert np.array_equal(buf[t], np.where(mask[t], codes[t], buf[t - 5]))
    assert not mask[5:].all(), "the static camera should leave some cells unchanged"
    # Chunks: 30 future actions, the last one repeated past the end.
    chunk = data.chunk(0, n - 3)
    assert chunk.shape == (30, 6) and np.array_equal(chunk[:3], ep["action"][n - 3:])
    assert (chunk[3:] == ep["action"][-1]).all()


def test_every_style_builds_valid_token_sequences(data, tiny):
    from molmoact2.models.nano.normalization import unnormalize_actions
    from molmoact2.models.nano.train_step import build_example

    model, proc = tiny
    tid = proc.token_ids
    ep = data.episodes[0]
    f = 7
    meta = data.norm_stats["metadata_by_tag"][data.tag]
    for style in ("action", "depth", "depth_action"):
        kw = data.frame_inputs(style, 0, f)
        ex = build_example(model, proc, **kw)
        prompt = proc.decode(ex["input_ids"][ex["labels"] == -100].tolist())
        bins = T.discretize_state(ep["state"][f], meta["state_stats"], "q01_q99")
        assert T.state_tokens_text(bins) in prompt and T.normalize_task(ep["instruction"]) in prompt
        assert prompt.endswith(T.TRIGGERS[{"action": "robot_action", "depth": "robot_depth",
                                            "depth_action": "robot_depth_action"}[style]])
        parsed = T.parse_generated(np.asarray(_completion(ex)), tid)
        assert parsed.eos is not None
        if style != "action":
            assert np.array_equal(parsed.depth_bins, ep["depth_buffer"][f])
        if style != "depth":
            assert parsed.action_ids.tolist() == data.fast_ids[0][f]
            # The discrete target decodes back to the chunk (FAST quantization error only).
            normed = data.action_tokenizer.decode([parsed.action_ids.tolist()], time_horizon=30, action_dim=6)[0]
            back = unnormalize_actions(normed, meta["action_stats"], "q01_q99")
            span = np.asarray(meta["action_stats"]["q99"]) - np.asarray(meta["action_stats"]["q01"])
            assert np.all(np.abs(back - data.chunk(0, f)) <= 0.1 * np.maximum(span, 1.0) + 1.0)
            assert ex["actions"].shape == (30, 32) and float(ex["action_mask"].sum()) == 30 * 6
    for item in data.qa[:12]:
        ex = build_example(model, proc, **data.qa_inputs(item))
        ids = _completion(ex)
        assert ids[-1] == model.config.eos_token_id
        answer = proc.decode(ids[:-1])
        assert answer == item["answer"]
        assert spatial.parse_answer(answer, strict=True).ok


def test_qa_answers_point_inside_their_masks(data):
    kinds = {item["kind"] for item in data.qa}
    assert {"point", "box", "count", "point_absent"} <= kinds
    for item in data.qa:
        seg = data.qa_segmentation(item)
        h, w = seg.shape
        ans = spatial.parse_answer(item["answer"], strict=True)
        if item["kind"] in ("point", "closer"):
            (pt,) = ans.points
            col, row = spatial.pixel_index(*pt.xy_px(width=w, height=h), width=w, height=h)
            assert seg[row, col] == item["labels"][0], item
        elif item["kind"] == "count":
            assert ans.count == item["count"] == len(ans.points) == len(item["labels"])
            hit = [int(seg[r, c]) for c, r in (spatial.pixel_index(*p.xy_px(width=w, height=h), width=w, height=h)
                                                for p in ans.points)]
            assert sorted(hit) == sorted(item["labels"]), item
        elif item["kind"] == "box":
            (box,) = ans.boxes
            x1, y1, x2, y2 = box.xyxy_px(width=w, height=h)
            rows, cols = np.nonzero(seg == item["labels"][0])
            assert x1 <= cols.min() + 0.5 and cols.max() + 0.5 <= x2 and y1 <= rows.min() + 0.5 and rows.max() + 0.5 <= y2
        elif item["kind"] == "point_absent":
            assert ans.count == 0 and not ans.points


def _train(args):
    from molmoact2.cli import main

    return main(["train", "nano", "--size", "tiny", "--batch-size", "2", "--threads", "1", "--noise-samples", "1",
                 *args])


def _losses(path):
    return [json.loads(line)["loss"] for line in (path / "train_log.jsonl").read_text().splitlines()]


def test_train_command_resumes_exactly_and_saves_a_loadable_checkpoint(data_dir, data, tmp_path):
    from safetensors import safe_open

    from molmoact2.models.base import CameraFrame, Observation
    from molmoact2.models.nano import load_nano

    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--data", str(data_dir), "--save-every", "100"]
    assert _train([*common, "--out", str(a), "--steps", "3"]) == 0
    assert (a / "train_state" / "state.json").is_file() and json.loads((a / "train_state" / "state.json").read_text())["step"] == 3
    with pytest.raises(ValueError, match="differ from the saved run"):
        _train([*common, "--out", str(a), "--steps", "5", "--resume", "--lr", "5e-4"])
    with pytest.raises(FileExistsError, match="--resume"):
        _train([*common, "--out", str(a), "--steps", "5"])
    assert _train([*common, "--out", str(a), "--steps", "5", "--resume"]) == 0
    assert _train([*common, "--out", str(b), "--steps", "5"]) == 0
    la, lb = _losses(a), _losses(b)
    assert len(la) == len(lb) == 5 and la == lb  # resumed == uninterrupted, bit for bit
    history = json.loads((a / "training_args.json").read_text())
    assert history["config"]["steps"] == 3 and [(r["from_step"], r["steps"]) for r in history["resumes"]] == [(3, 5)]
    assert "--resume" in history["resumes"][0]["argv"]
    log = [json.loads(line) for line in (a / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log) and any("qa_ce" in r or "action_flow" in r for r in log)

    with safe_open(str(a / "model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
    saved = json.loads((a / "norm_stats.json").read_text())
    assert saved == data.norm_stats
    ep = data.episodes[0]
    policy = load_nano(path=str(a), depth_reasoning=True, seed=0)
    obs = Observation(cameras={"front": CameraFrame(rgb=ep["front"][0]), "wrist": CameraFrame(rgb=ep["wrist"][0])},
                      state=ep["state"][0], instruction=ep["instruction"])
    step = policy.predict(obs)
    assert step.actions.shape == (5, 6) and np.isfinite(step.actions).all()
    assert step.depth_bins.shape == (100,)


QA_ONLY = "action=0,depth=0,depth_action=0,qa=1"


def test_init_from_starts_a_new_run_from_trained_weights(data_dir, tmp_path):
    from safetensors.torch import load_file

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    common = ["--data", str(data_dir), "--save-every", "100"]
    assert _train([*common, "--out", str(a), "--steps", "2"]) == 0
    # lr 0: the new run's step changes nothing, so its export is A's weights exactly (a random start would differ)
    assert _train([*common, "--out", str(b), "--steps", "1", "--lr", "0", "--mix", QA_ONLY, "--init-from", str(a)]) == 0
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    args = json.loads((b / "training_args.json").read_text())
    assert args["config"]["init_from"] == str(a) and args["config"]["mix"]["qa"] == 1.0
    assert args["init_from"]["step"] == 2 and args["init_from"]["weights"].endswith("train_state/model")
    assert args["init_from"]["training_args"]["config"]["steps"] == 2  # the provenance chain is kept
    assert [json.loads(line)["styles"]["qa"] for line in (b / "train_log.jsonl").read_text().splitlines()] == [2]
    # --ordinal-state: the same lr-0 start, but the 256 state-bin rows are rewritten (and only they)
    d = tmp_path / "d"
    assert _train([*common, "--out", str(d), "--steps", "1", "--lr", "0", "--mix", QA_ONLY, "--init-from", str(a),
                   "--ordinal-state"]) == 0
    wd = load_file(str(d / "model.safetensors"))
    key = next(k for k in wd if k.endswith("embed_tokens.weight"))
    start = json.loads((d / "config.json").read_text())["state_token_start_id"]
    state = slice(start, start + 256)
    assert all(torch.equal(wa[k], wd[k]) for k in wa if k != key)
    rest = [torch.cat([w[key][:start], w[key][start + 256:]]) for w in (wa, wd)]
    assert torch.equal(*rest)
    rows = torch.nn.functional.normalize(wd[key][state].float(), dim=1)
    before = torch.nn.functional.normalize(wa[key][state].float(), dim=1)
    assert float((rows[1:] * rows[:-1]).sum(1).mean()) > 0.9 > float((before[1:] * before[:-1]).sum(1).mean())
    assert json.loads((d / "training_args.json").read_text())["config"]["ordinal_state"] is True
    with pytest.raises(FileNotFoundError, match="not a Nano checkpoint"):
        _train([*common, "--out", str(c), "--steps", "1", "--init-from", str(tmp_path / "nothing")])
    with pytest.raises(ValueError, match="pass the matching --size"):
        from molmoact2.cli import main

        main(["train", "nano", "--size", "small", "--threads", "1", *common, "--out", str(c), "--steps", "1",
              "--init-from", str(a)])


def test_init_from_keeps_the_parents_action_steps_and_refuses_other_normalization(data_dir, tmp_path):
    """A parent that executes more actions per query than the caches wrote (the shipped Nano: 30, the caches 15)
    fine-tunes, and its child keeps the parent's n_action_steps; different action stats are refused."""
    import shutil

    a, parent, child, other = (tmp_path / n for n in ("a", "parent", "child", "other"))
    common = ["--data", str(data_dir), "--save-every", "100"]
    assert _train([*common, "--out", str(a), "--steps", "1"]) == 0
    # the exported directory only (without train_state/, --init-from would read the fp32 state and its stats)
    shutil.copytree(a, parent, ignore=shutil.ignore_patterns("train_state"))
    stats = json.loads((parent / "norm_stats.json").read_text())
    (tag,) = stats["metadata_by_tag"]
    data_steps = stats["metadata_by_tag"][tag]["n_action_steps"]
    stats["metadata_by_tag"][tag]["n_action_steps"] = data_steps + 1
    (parent / "norm_stats.json").write_text(json.dumps(stats))
    assert _train([*common, "--out", str(child), "--steps", "1", "--init-from", str(parent)]) == 0
    kept = json.loads((child / "norm_stats.json").read_text())["metadata_by_tag"][tag]
    assert kept["n_action_steps"] == data_steps + 1
    assert kept["action_stats"] == stats["metadata_by_tag"][tag]["action_stats"]
    stats["metadata_by_tag"][tag]["action_stats"]["q99"][0] += 1.0
    (parent / "norm_stats.json").write_text(json.dumps(stats))
    with pytest.raises(ValueError, match="norm stats differ"):
        _train([*common, "--out", str(other), "--steps", "1", "--init-from", str(parent)])


def test_state_noise_blurs_robot_examples_states_only_when_asked(data, data_dir, tmp_path):
    """--state-noise F: each robot example's state gets N(0, (F * range)^2) per joint before binning; questions are
    untouched; with 0 the examples (and the random stream) are exactly those of a run without the option."""
    stats = data.norm_stats["metadata_by_tag"][data.tag]["state_stats"]
    span = np.asarray(stats["q99"], np.float32) - np.asarray(stats["q01"], np.float32)
    plain = [data.example_inputs("action", np.random.default_rng(s)) for s in range(200)]
    data.state_noise = 0.1
    try:
        noisy = [data.example_inputs("action", np.random.default_rng(s)) for s in range(200)]
        qa = data.example_inputs("qa", np.random.default_rng(0))
    finally:
        data.state_noise = 0.0
    assert [data.example_inputs("action", np.random.default_rng(s))["state"].tolist() for s in range(3)] == \
        [p["state"].tolist() for p in plain[:3]]
    diff = np.stack([n["state"] - p["state"] for n, p in zip(noisy, plain)]) / np.maximum(span, 1e-6)
    moved = span > 0  # a joint that never moved in this one-episode cache has no range to scale by
    assert np.allclose(diff[:, moved].std(axis=0), 0.1, rtol=0.25), diff.std(axis=0)
    assert abs(float(diff[:, moved].mean())) < 0.03 and "state" not in qa
    assert all(np.array_equal(n["actions"], p["actions"]) for n, p in zip(noisy, plain))  # only the state changes
    out = tmp_path / "sn"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "1", "--state-noise", "0.1"]) == 0
    assert json.loads((out / "training_args.json").read_text())["config"]["state_noise"] == 0.1
    with pytest.raises(ValueError, match="expected 0..1"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "bad"), "--steps", "1", "--state-noise", "-0.1"])


def test_front_dropout_blanks_plain_action_examples_front_image_only_when_asked(data, data_dir, tmp_path):
    """--front-dropout P: a plain action example's front image is mid-grey with probability P (the wrist image,
    state and chunk as they were; its grounding cells dropped with the picture); depth_action and questions keep
    theirs; with 0 the random stream is a run's without the option."""
    plain = [data.example_inputs("action", np.random.default_rng(s)) for s in range(200)]
    data.front_dropout = 0.5
    try:
        dropped = [data.example_inputs("action", np.random.default_rng(s)) for s in range(200)]
        depth_action = [data.example_inputs("depth_action", np.random.default_rng(s)) for s in range(50)]
    finally:
        data.front_dropout = 0.0
    assert [data.example_inputs("action", np.random.default_rng(s))["images"][0].tolist() for s in range(3)] == \
        [p["images"][0].tolist() for p in plain[:3]]
    grey = [bool((np.asarray(d["images"][0]) == 128).all()) for d in dropped]
    assert 0.35 < np.mean(grey) < 0.65, np.mean(grey)
    assert not any((np.asarray(p["images"][0]) == 128).all() for p in plain)
    for d, p, g in zip(dropped, plain, grey):
        assert np.array_equal(d["images"][1], p["images"][1]) and np.array_equal(d["actions"], p["actions"])
        assert np.array_equal(d["state"], p["state"]) and np.asarray(d["images"][0]).shape == np.asarray(p["images"][0]).shape
        if not g:
            assert np.array_equal(d["images"][0], p["images"][0])
    assert not any((np.asarray(d["images"][0]) == 128).all() for d in depth_action)
    masked = {**plain[0], "ground_mask": np.ones((48, 48), bool), "reach_xy": np.zeros(2)}
    assert not {"ground_mask", "reach_xy"} & set(data.without_front(masked))
    out = tmp_path / "fd"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "1", "--front-dropout", "0.5"]) == 0
    assert json.loads((out / "training_args.json").read_text())["config"]["front_dropout"] == 0.5
    with pytest.raises(ValueError, match="expected a probability"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "bad"), "--steps", "1", "--front-dropout", "1.5"])


def test_arrival_share_draws_robot_examples_from_chunks_that_bring_the_jaw_to_the_object(data, data_dir, tmp_path):
    """--arrival-share P --arrival-cm D: P of the action and depth_action examples come from frames whose jaw is
    farther than D from the named object and whose 30-tick chunk comes within D (recomputed here from the cache's
    offsets); questions keep theirs; with 0 the random stream is a run's without the option."""
    ep = data.episodes[0]
    recorded = ep["target_offset_m"]
    n = len(recorded)
    assert recorded.shape == (n, 3) and np.isfinite(recorded).all()
    # This one touch demo (~30 frames) fits in one chunk, so its offsets are replaced for the test by a pick's
    # shape: far, within 1 cm at frame 10 for three frames (the grasp), then away again (the carry to the bin).
    dist_cm = np.where(np.arange(n) < 10, 12.0 - np.arange(n) * 0.5, 1.0)
    dist_cm[13:] = 8.0
    near_cm = 2.0
    expected = [f for f in range(n) if dist_cm[f] > near_cm and dist_cm[f:f + 30].min() <= near_cm]
    assert expected == list(range(10)) and n > 20
    rng = np.random.default_rng
    plain = [data.example_inputs("action", rng(s)) for s in range(40)]
    ep["target_offset_m"] = np.stack([dist_cm / 100.0, np.zeros(n), np.zeros(n)], 1).astype(np.float32)
    try:
        assert data.use_arrival(1.0, near_cm) == {"touch": len(expected)}
        assert data.arrival_index[:, 0].tolist() == [0] * len(expected)
        assert data.arrival_index[:, 1].tolist() == expected
        drawn = [data.example_inputs(style, rng(s)) for s in range(40) for style in ("action", "depth_action")]
        question = data.example_inputs("qa", rng(0))
        data.arrival_share = 0.5
        half = [data.example_inputs("action", rng(s)) for s in range(200)]
    finally:
        data.arrival_share, data.arrival_index = 0.0, np.zeros((0, 2), np.int64)
        ep["target_offset_m"] = recorded
    frame_of = {ep["state"][f].tobytes(): f for f in range(n)}
    assert {frame_of[d["state"].tobytes()] for d in drawn} <= set(expected)
    assert len({frame_of[d["state"].tobytes()] for d in drawn}) > 1
    share = np.mean([frame_of[h["state"].tobytes()] in expected for h in half])
    uniform = len(expected) / n
    assert 0.5 + 0.5 * uniform - 0.15 < share < 0.5 + 0.5 * uniform + 0.15, (share, uniform)
    assert question["style"] == "qa"
    assert [data.example_inputs("action", rng(s))["state"].tolist() for s in range(40)] == \
        [p["state"].tolist() for p in plain]
    # the command on the recorded offsets: a touch demo ends with the jaw beside the object, so within its own
    # closest approach + 1 cm some chunk arrives, and within half of it none does
    closest_cm = float(np.linalg.norm(recorded, axis=1).min() * 100.0)
    out = tmp_path / "arr"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "1", "--arrival-share", "0.5",
                   "--arrival-cm", str(closest_cm + 1.0)]) == 0
    saved = json.loads((out / "training_args.json").read_text())
    assert saved["config"]["arrival_share"] == 0.5 and saved["arrival_frames"]["touch"] > 0
    with pytest.raises(ValueError, match="expected a share"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "bad"), "--steps", "1", "--arrival-share", "2"])
    with pytest.raises(ValueError, match="no demo frame"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "bad2"), "--steps", "1", "--arrival-share", "0.5",
                "--arrival-cm", str(closest_cm * 0.5)])


def test_shift_augment_moves_picture_points_and_mask_together(data, data_dir, tmp_path):
    """--shift-augment F: a question's picture moves by whole pixels (up to F of its side) and the answer's points
    and grounding mask by the same pixels, so the moved point shows what the original point showed; answers that
    would leave the picture, and box answers, are refused; robot examples and F = 0 are untouched."""
    from molmoact2.training.shift_augment import shift_mask, shift_points_text, shifted_question

    # by hand: 10 px right on a 100-px picture is +100 on the 0-1000 scale; y stays
    assert shift_points_text('Counting the <points coords="1 1 400 500 2 650 900">cubes</points> shows a total of 2.',
                             10, 0, width=100, height=100) == \
        'Counting the <points coords="1 1 500 500 2 750 900">cubes</points> shows a total of 2.'
    assert shift_points_text('<points coords="1 1 400 980">cube</points>', 0, 5, width=100, height=100) is None
    assert shift_points_text('<boxes coords="1 1 10 10 50 50">cube</boxes>', 1, 1, width=100, height=100) is None
    assert shift_points_text("There are none.", 3, 3, width=100, height=100) == "There are none."
    with pytest.raises(ValueError, match="expected 'image id x y"):
        shift_points_text('<points coords="1 1 400">cube</points>', 1, 1, width=100, height=100)
    mask = np.zeros((6, 6), bool)
    mask[2, 3] = True
    assert np.argwhere(shift_mask(mask, 2, -1)).tolist() == [[1, 5]] and not shift_mask(mask, 3, 0).any()

    pointing = [q for q in data.qa if spatial.parse_answer(q["answer"]).points]
    assert pointing, "the tiny cache should hold pointing answers"
    moved_any = 0
    for s, item in enumerate(pointing * 5):
        kw = data.qa_inputs(item) | {"ground_mask": np.isin(data.qa_segmentation(item), item.get("labels") or [0])}
        out, (dx, dy) = shifted_question(kw, 0.1, np.random.default_rng(s))
        image, moved = np.asarray(kw["images"][0]), np.asarray(out["images"][0])
        h, w = image.shape[:2]
        assert max(abs(dx), abs(dy)) <= round(0.1 * w) and moved.shape == image.shape
        moved_any += (dx, dy) != (0, 0)
        before = spatial.parse_answer(kw["answer"]).points_px(width=w, height=h)
        after = spatial.parse_answer(out["answer"]).points_px(width=w, height=h)
        assert np.abs(after - before - [dx, dy]).max() <= 0.5 * w / 1000 + 1e-4  # rounding on the 0-1000 scale
        for x0, y0 in before.astype(int):  # the pixel under each point moved by the same (dx, dy) as the point
            assert np.array_equal(image[y0, x0], moved[min(max(y0 + dy, 0), h - 1), min(max(x0 + dx, 0), w - 1)])
        sy, sx = kw["ground_mask"].shape[0] / h, kw["ground_mask"].shape[1] / w
        assert out["ground_mask"].sum() <= kw["ground_mask"].sum()
        if kw["ground_mask"].any() and out["ground_mask"].any():
            shift = np.argwhere(out["ground_mask"]).mean(0) - np.argwhere(kw["ground_mask"]).mean(0)
            if out["ground_mask"].sum() == kw["ground_mask"].sum():
                assert np.allclose(shift, [round(dy * sy), round(dx * sx)])
    assert moved_any > len(pointing)  # most draws move the picture

    data.shift_frac = 0.1
    try:
        robot = data.example_inputs("action", np.random.default_rng(0))
    finally:
        data.shift_frac = 0.0
    assert np.array_equal(robot["images"][0], data.example_inputs("action", np.random.default_rng(0))["images"][0])
    out = tmp_path / "sa"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "1", "--shift-augment", "0.08",
                   "--mix", "action=0.5,qa=0.5"]) == 0
    assert json.loads((out / "training_args.json").read_text())["config"]["shift_augment"] == 0.08
    with pytest.raises(ValueError, match="share of the picture's side"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "bad"), "--steps", "1", "--shift-augment", "0.5"])
    with pytest.raises(ValueError, match="qa=0"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "bad2"), "--steps", "1", "--shift-augment", "0.1",
                "--mix", "action=1,depth=0,depth_action=0,qa=0"])


def test_ordinal_state_rows_are_similar_near_and_different_far():
    from molmoact2.models.nano.state_embedding import ordinal_rows

    rows = ordinal_rows(256, 64, seed=3, norm=0.5)
    assert rows.shape == (256, 64) and torch.allclose(rows.norm(dim=1), torch.full((256,), 0.5), atol=1e-5)
    unit = torch.nn.functional.normalize(rows, dim=1)

    def similarity(gap: int) -> float:
        return float((unit[gap:] * unit[:-gap]).sum(1).mean())

    assert similarity(1) > 0.9 and similarity(2) > 0.8 and abs(similarity(50)) < 0.2
    assert torch.equal(rows, ordinal_rows(256, 64, seed=3, norm=0.5))  # seeded
    with pytest.raises(ValueError, match="width of at least 33"):
        ordinal_rows(256, 16)


def test_pooling_gives_the_language_model_finer_image_tokens(data_dir, data, tmp_path):
    from safetensors.torch import load_file

    from molmoact2.models.base import CameraFrame, Observation
    from molmoact2.models.nano import load_nano

    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--data", str(data_dir), "--save-every", "100"]
    assert _train([*common, "--out", str(a), "--steps", "1"]) == 0
    # lr 0 at 1x1: the pool has no weights of its own, so the export holds A's weights under a new token grid
    assert _train([*common, "--out", str(b), "--steps", "1", "--lr", "0", "--init-from", str(a),
                   "--pooling", "1x1"]) == 0
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    grids = {}
    for d in (a, b):
        policy = load_nano(path=str(d), depth_reasoning=True, seed=0)
        grids[d.name] = (tuple(policy.processor.image_grid), list(policy.model.config.adapter_config.pooling_size))
        ep = data.episodes[0]
        obs = Observation(cameras={"front": CameraFrame(rgb=ep["front"][0]), "wrist": CameraFrame(rgb=ep["wrist"][0])},
                          state=ep["state"][0], instruction=ep["instruction"])
        step = policy.predict(obs)  # the vision adapter's token count must match the prompt's <im_patch> count
        assert np.isfinite(step.actions).all() and step.depth_bins.shape == (100,)
    assert grids == {"a": ((4, 4), [2, 2]), "b": ((8, 8), [1, 1])}  # tiny: 64 px / 8-px patches = 8x8
    assert json.loads((b / "training_args.json").read_text())["config"]["pooling"] == [1, 1]
    # the pool is part of the run: a resume must ask for the same one
    assert _train([*common, "--out", str(b), "--steps", "2", "--resume", "--lr", "0", "--init-from", str(a),
                   "--pooling", "1x1"]) == 0
    with pytest.raises(ValueError, match="differ from the saved run"):
        _train([*common, "--out", str(b), "--steps", "3", "--resume", "--lr", "0", "--init-from", str(a)])
    with pytest.raises(ValueError, match="dividing the 8x8 patch grid"):
        _train([*common, "--out", str(tmp_path / "c"), "--steps", "1", "--pooling", "3x3"])
    with pytest.raises(SystemExit, match="ROWSxCOLS"):
        _train([*common, "--out", str(tmp_path / "d"), "--steps", "1", "--pooling", "fine"])


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    from molmoact2.cli import main

    out = tmp_path_factory.mktemp("nano") / "scenes"
    assert main(["train", "scenes", "--out", str(out), "--scenes", "3", "--first-seed", "500",
                 "--max-expert-ticks", "40"]) == 0
    return out


def test_scene_questions_merge_with_demos_and_train(data_dir, data, scenes_dir, tmp_path):
    from molmoact2.cli import main
    from molmoact2.training.nano_examples import NanoTrainData

    meta = json.loads((scenes_dir / "meta.json").read_text())
    assert [s["seed"] for s in meta["scenes"]] == [500, 501, 502] and meta["episodes"] == []
    assert all(0 <= s["expert_ticks"] <= 40 for s in meta["scenes"])
    both = NanoTrainData.load([data_dir, scenes_dir], progress=False)
    assert both.norm_stats == data.norm_stats and len(both.episodes) == len(data.episodes)
    assert len(both.qa) == len(data.qa) + meta["qa_items"] and both.scene_images.shape == (3, 96, 96, 3)
    scene_items = [q for q in both.qa if "scene" in q]
    assert {q["scene"] for q in scene_items} == {0, 1, 2}
    # every answer still lands in its own mask after the merge (indices shifted, segmentations looked up per cache)
    for item in both.qa:
        if item["kind"] == "point":
            seg = both.qa_segmentation(item)
            (pt,) = spatial.parse_answer(item["answer"], strict=True).points
            col, row = spatial.pixel_index(*pt.xy_px(width=seg.shape[1], height=seg.shape[0]),
                                           width=seg.shape[1], height=seg.shape[0])
            assert seg[row, col] == item["labels"][0], item
    assert both.qa_image(scene_items[0]).shape == (96, 96, 3)
    alone = NanoTrainData.load(scenes_dir, progress=False)
    assert alone.norm_stats is None and len(alone.index) == 0
    with pytest.raises(ValueError, match="no demo frames"):
        alone.sample_batch(None, None, np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="question scenes only"):
        _train(["--data", str(scenes_dir), "--out", str(tmp_path / "x"), "--steps", "1", "--mix", QA_ONLY])
    with pytest.raises(ValueError, match="expected training seeds"):
        main(["train", "scenes", "--out", str(tmp_path / "s"), "--scenes", "2", "--first-seed", "9999"])
    out = tmp_path / "run"
    assert _train(["--data", str(data_dir), str(scenes_dir), "--out", str(out), "--steps", "2", "--mix", QA_ONLY]) == 0
    args = json.loads((out / "training_args.json").read_text())
    assert args["data"] == [str(data_dir), str(scenes_dir)] and args["data_scenes"] == 3
    assert args["data_questions"] == len(both.qa)
    # --qa-kinds: practise one skill; the run trains on (and records) only those questions
    points = sum(q["kind"] == "point" for q in both.qa)
    assert 0 < points < len(both.qa)
    assert _train(["--data", str(data_dir), str(scenes_dir), "--out", str(tmp_path / "points"), "--steps", "1",
                   "--mix", QA_ONLY, "--qa-kinds", "point"]) == 0
    args = json.loads((tmp_path / "points" / "training_args.json").read_text())
    assert args["data_questions"] == points and args["config"]["qa_kinds"] == ["point"]
    with pytest.raises(ValueError, match=r"--qa-kinds: \['riddle'\] not among this data's question kinds"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "bad_kind"), "--steps", "1", "--mix", QA_ONLY,
                "--qa-kinds", "point,riddle"])


def test_contrastive_demos_share_a_layout_and_differ_only_in_the_named_object(tmp_path, capsys):
    """--targets-per-layout 2: two demos of one layout, each naming (and reaching) a different object."""
    from molmoact2.cli import main

    out = tmp_path / "contrast"
    assert main(["train", "data", "--out", str(out), "--episodes-per-task", "2", "--tasks", "touch",
                 "--first-seed", "100", "--targets-per-layout", "2", "--render-size", str(RENDER),
                 "--store-size", "64", "--qa-frames-per-episode", "1"]) == 0
    assert "layouts: 1; re-aimed demos (another object named) per task: {'touch': 1}" in capsys.readouterr().out
    eps = json.loads((out / "meta.json").read_text())["episodes"]
    assert [e["seed"] for e in eps] == [100, 100] and [e["retargeted"] for e in eps] == [False, True]
    a, b = eps
    assert a["target"] != b["target"]
    assert a["instruction"].replace(a["target"], b["target"]) == b["instruction"]
    first = [np.load(out / e["file"])["front"][0] for e in eps]
    assert np.array_equal(*first)  # the same picture at the start ...
    acts = [np.load(out / e["file"])["action"] for e in eps]
    n = min(map(len, acts))
    assert np.abs(acts[0][:n] - acts[1][:n]).max() > 10  # ... and different reaches (robot units)
    with pytest.raises(ValueError, match="targets_per_layout: expected >= 1"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--targets-per-layout", "0"])


def test_direction_pairs_push_one_object_both_ways_on_one_layout(tmp_path, capsys):
    """--direction-pairs: push_left and push_right demos of one seed share the picture and the object; only the
    direction word differs (both recorded demos succeeded: the object moved 5 cm each way)."""
    from molmoact2.cli import main

    out = tmp_path / "pairs"
    assert main(["train", "data", "--out", str(out), "--episodes-per-task", "1", "--tasks", "push_left,push_right",
                 "--first-seed", "1000", "--direction-pairs", "--render-size", str(RENDER), "--store-size", "64",
                 "--qa-frames-per-episode", "1"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert "pairs: 1 on one layout and object each" in capsys.readouterr().out
    a, b = meta["episodes"]
    assert (a["task"], b["task"]) == ("push_left", "push_right") and a["seed"] == b["seed"] >= 1000
    assert a["target"] == b["target"] and meta["unpaired_seeds"] == a["seed"] - 1000
    assert a["instruction"] != b["instruction"] and a["target"] in b["instruction"]
    first = [np.load(out / e["file"])["front"][0] for e in (a, b)]
    assert np.array_equal(*first)
    with pytest.raises(ValueError, match="direction_pairs: expected two different tasks"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--tasks", "touch", "--direction-pairs"])


def test_wrong_way_pairs_start_where_the_opposite_words_expert_left_the_arm(tmp_path, capsys):
    """--wrong-way-ticks: each demo of a pair begins where the OTHER word's expert left the arm after the recorded
    number of ticks (replayed here from a fresh reset), then the recorded word's expert finishes successfully."""
    from molmoact2.cli import main
    from molmoact2.sim import make_env

    out = tmp_path / "wrong_way"
    assert main(["train", "data", "--out", str(out), "--episodes-per-task", "1", "--tasks", "push_left,push_right",
                 "--first-seed", "1000", "--direction-pairs", "--wrong-way-ticks", "10-20", "--render-size",
                 str(RENDER), "--store-size", "64", "--qa-frames-per-episode", "1"]) == 0
    assert "wrong-way starts: the opposite word's expert drove a median" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    episodes = meta["episodes"]
    assert [e["task"] for e in episodes] == ["push_left", "push_right"]
    for e, other in zip(episodes, ("push_right", "push_left")):
        assert e["takeover"]["policy"] == f"expert:{other}" and 10 <= e["takeover"]["policy_ticks"] <= 20
        env = make_env(other, image_size=RENDER, cameras=("front", "wrist"))
        try:
            env.reset(e["seed"], options={"target": e["target"]})
            home = env.state().copy()
            expert, done = env.expert(), 0
            while done < e["takeover"]["policy_ticks"]:
                for action in expert.act(None)[: e["takeover"]["policy_ticks"] - done]:
                    env.step(action, observe=False)
                    done += 1
            first = np.load(out / e["file"])["state"][0]
            assert np.allclose(first, env.state(), atol=1e-4)  # the opposite word's plan, replayed
            assert np.abs(first - home).max() > 1.0  # the arm had left home (robot units)
        finally:
            env.close()
    with pytest.raises(ValueError, match="wrong_way_ticks: needs direction_pairs"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--tasks", "push_left", "--wrong-way-ticks", "10"])
    with pytest.raises(ValueError, match="--wrong-way-ticks: expected N or MIN-MAX"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--tasks", "push_left,push_right",
              "--direction-pairs", "--wrong-way-ticks", "ten"])


def test_takeover_records_the_expert_from_where_the_policy_left_the_arm(tmp_path, capsys):
    """--takeover-policy: the shipped Nano drives 2 chunks of 15 ticks (--takeover-chunk-ticks; its own chunks are 30,
    which finish a touch alone), then the expert finishes; only its part is recorded."""
    from molmoact2.cli import main
    from molmoact2.sim import make_env

    out = tmp_path / "takeover"
    assert main(["train", "data", "--out", str(out), "--episodes-per-task", "1", "--tasks", "touch",
                 "--first-seed", "300", "--takeover-policy", "nano", "--takeover-chunks", "2",
                 "--takeover-chunk-ticks", "15",
                 "--render-size", str(RENDER), "--store-size", "64", "--qa-frames-per-episode", "1"]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    (ep,) = meta["episodes"]
    info = ep["takeover"]
    assert info["policy"] == "nano" and info["ended"] is None
    assert info["policy_chunks"] == 2 and info["policy_ticks"] == 30  # 2 chunks of 15 ticks
    assert sum(meta["takeover_endings"].values()) == ep["seed"] - 300 + 1 and meta["takeover_endings"]["taken_over"]
    assert "takeover: the policy's parts ended" in printed
    states = np.load(out / ep["file"])["state"]
    env = make_env("touch", image_size=RENDER, depth=False, segmentation=False)
    home = env.reset(ep["seed"])[0].state
    # the recording starts where the policy left the arm, not at home ...
    assert np.abs(states[0] - home).max() > 1.0
    # ... and the expert's part still fits the episode's time limit (it succeeded, or it would not be here)
    assert info["policy_ticks"] + ep["length"] <= env.time_limit_steps
    env.close()
    assert 0 < info["jaw_to_target_m"] < 0.5 and "median jaw-to-object distance at the hand-over" in printed
    with pytest.raises(ValueError, match="expected 1 <= min <= max"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--takeover-policy", "nano", "--takeover-chunks", "3-1"])
    with pytest.raises(ValueError, match=r"--takeover-near-cm: expected a distance in centimetres"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--takeover-policy", "nano", "--takeover-near-cm", "400"])
    with pytest.raises(ValueError, match="expected N or MIN-MAX"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--takeover-policy", "nano", "--takeover-chunks", "a"])
    with pytest.raises(ValueError, match=r"takeover chunk ticks: expected 1..30"):
        main(["train", "data", "--out", str(tmp_path / "bad"), "--takeover-policy", "nano", "--takeover-chunk-ticks",
              "31"])


def test_expert_run_continues_without_reset_only_without_a_target():
    from molmoact2.sim import make_env
    from molmoact2.sim.rollout import run_episode

    env = make_env("touch", image_size=RENDER, depth=False, segmentation=False)
    env.reset(5)
    for _ in range(10):
        env.step(env.state())
    res = run_episode(env, 5, keep=True, reset=False)
    assert res.success and env.steps == 10 + res.steps  # the env's own count (and time limit) carried on
    with pytest.raises(ValueError, match="target= needs reset=True"):
        run_episode(env, 5, reset=False, target="red cube")
    env.close()


# ---- `molmoact2 train vision`: image tokens learn what is where --------------------------------------------------
def test_cell_targets_give_class_fractions_and_centroids_per_token_cell():
    from molmoact2.training.nano_vision import BACKGROUND, cell_targets

    seg = np.zeros((8, 8), np.int16)
    seg[0:2, 0:2] = 5  # a named object in the top-left cell
    seg[6:8, 4:8] = 7  # a label with no known name: background
    frac, pos, has = cell_targets(seg, {5: "red cube", 7: "mystery"}, (BACKGROUND, "red cube"), (2, 2))
    assert frac.shape == (4, 2) and np.allclose(frac.sum(1), 1.0)
    assert frac[0, 1] == pytest.approx(4 / 16) and frac[1:, 1].tolist() == [0, 0, 0] and frac[3, 0] == 1.0
    # the centroid of pixels 0..1 is 1.0 px from the edge (pixel centres), in image fractions
    assert pos[0, 1].tolist() == pytest.approx([1.0 / 8, 1.0 / 8]) and has[0].tolist() == [True, True]
    assert not has[1:, 1].any()


def test_vision_grader_scores_oracle_predictions_not_another_images(scenes_dir):
    from molmoact2.training.nano_examples import NanoTrainData
    from molmoact2.training.nano_vision import VisionSet, grade_predictions, position_targets

    vs = VisionSet(NanoTrainData.load(scenes_dir, progress=False), None, (4, 4), (64, 64))
    assert vs.classes[0] == "background" and "bin" in vs.classes and len(vs) == 3
    assert vs.pixels.shape == (3, 3, 64, 64) and vs.frac.shape == (3, 16, len(vs.classes))
    oracle = grade_predictions(vs, vs.frac, vs.pos)
    objects = oracle["objects"]
    assert objects["n"] == sum(q["kind"] == "point" and "bin" not in q["answer"] for _, q in vs.questions)
    assert objects["rate"] >= 0.9 and oracle["fixtures"]["rate"] >= 0.9
    # one shared position per cell (its main object's, movable before the bin): capped where two objects share a
    # cell (these 16-px cells of a 64-px image often do; the small model's 6x6 grid holds 89% of held-out objects)
    shared, mask = position_targets(vs.frac, vs.pos, vs.has, False, vs.classes)
    assert shared.shape == (3, 16, 1, 2) and mask.shape == (3, 16, 1) and not mask[vs.frac[..., 0] == 1].any()
    one = grade_predictions(vs, vs.frac, shared)["objects"]
    assert one["rate"] >= 0.5 and one["hits"] <= objects["hits"]
    # another image's targets: the cells and positions no longer match the masks
    rolled = grade_predictions(vs, np.roll(vs.frac, 1, axis=0), np.roll(vs.pos, 1, axis=0))
    assert rolled["objects"]["hits"] < objects["hits"]


def test_train_vision_changes_only_the_image_path_and_feeds_train_nano(data_dir, scenes_dir, tmp_path):
    from safetensors.torch import load_file

    from molmoact2.cli import main

    a, v, f = tmp_path / "a", tmp_path / "v", tmp_path / "f"
    assert _train(["--data", str(data_dir), "--out", str(a), "--steps", "1"]) == 0
    common = ["train", "vision", "--init-from", str(a), "--data", str(scenes_dir), "--heldout", str(data_dir),
              "--epochs", "2", "--batch-size", "2", "--threads", "1"]
    assert main([*common, "--out", str(v)]) == 0
    record = json.loads((v / "vision_pretrain.json").read_text())
    assert record["format"] == "molmoact2_nano_vision_pretrain.v1" and record["classes"][0] == "background"
    assert record["images"] == {"training": 3, "heldout": 2} and len(record["history"]) == 2
    assert sum(g["n"] for g in record["grades"]["heldout"].values()) > 0 and (v / "vision_head.safetensors").is_file()
    wa, wv = load_file(str(a / "model.safetensors")), load_file(str(v / "model.safetensors"))
    image_path = [k for k in wa if k.startswith(("vit.", "adapter."))]
    assert image_path and wa.keys() == wv.keys()
    assert all(torch.equal(wa[k], wv[k]) for k in wa if k not in image_path)  # LM and expert untouched
    assert any(not torch.equal(wa[k], wv[k]) for k in image_path)
    assert main([*common, "--out", str(f), "--frozen"]) == 0  # a probe: only the throwaway head learns
    wf = load_file(str(f / "model.safetensors"))
    assert all(torch.equal(wa[k], wf[k]) for k in wa)
    with pytest.raises(FileExistsError, match="not empty"):
        main([*common, "--out", str(v)])
    # the next stage starts from it; --freeze-vision keeps what it learned while the language model learns to read it
    lm = tmp_path / "lm"
    assert _train(["--data", str(data_dir), str(scenes_dir), "--out", str(lm), "--steps", "2",
                   "--mix", QA_ONLY, "--init-from", str(v), "--freeze-vision"]) == 0
    args = json.loads((lm / "training_args.json").read_text())
    assert args["init_from"]["weights"].endswith("train_state/model") and args["config"]["freeze_vision"] is True
    wl = load_file(str(lm / "model.safetensors"))
    assert all(torch.equal(wv[k], wl[k]) for k in image_path)
    assert any(not torch.equal(wv[k], wl[k]) for k in wl if k.startswith("lm."))


def test_expert_only_trains_the_action_expert_and_nothing_else(data_dir, tmp_path):
    from safetensors.torch import load_file

    start = tmp_path / "start"
    assert _train(["--data", str(data_dir), "--out", str(start), "--steps", "1"]) == 0
    actions = "action=1,depth=0,depth_action=1,qa=0"
    out = tmp_path / "expert_only"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "2", "--mix", actions,
                   "--init-from", str(start), "--expert-only", "--expert-ground-weight", "0.5",
                   "--expert-ground-block", "1"]) == 0
    before, after = load_file(str(start / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert before.keys() == after.keys()
    expert = [k for k in before if k.startswith("action_expert.")]
    assert expert and "action_expert.context_k_proj.weight" in expert  # the shared context K/V projection is the expert's
    assert all(torch.equal(before[k], after[k]) for k in before if k not in expert)  # ViT, adapter, LM as loaded
    assert any(not torch.equal(before[k], after[k]) for k in expert)
    assert json.loads((out / "training_args.json").read_text())["config"]["expert_only"] is True
    # batches without a flow target would train nothing; LM-side auxiliary losses would be silently dropped
    with pytest.raises(ValueError, match="depth=0 and qa=0"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "x1"), "--steps", "1", "--expert-only"])
    with pytest.raises(ValueError, match="--expert-ground-weight for the expert"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "x2"), "--steps", "1", "--mix", actions,
                "--expert-only", "--ground-weight", "1"])


def test_grounding_targets_mark_the_objects_cells_and_the_coordinate_tokens(tiny):
    from molmoact2.models.nano.grounding import cell_fractions, coordinate_token_indices

    mask = np.zeros((8, 8), bool)
    mask[0:2, 3:5] = True  # 4 pixels, split over the two top cells of a 2x2 grid
    assert cell_fractions(mask, (2, 2)).tolist() == [0.5, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="covers no pixel"):
        cell_fractions(np.zeros((8, 8), bool), (2, 2))
    tok = tiny[1].tokenizer
    answer = '<points coords="1 1 523 187 2 40 50">red cube</points>'
    ids = tok.encode(answer, add_special_tokens=False)
    spelled = "".join(tok.decode([ids[i]]) for i in coordinate_token_indices(tok, answer))
    assert spelled.strip() == "523 187"  # the first point only, x then y
    assert coordinate_token_indices(tok, "There are none.") == []


def test_grounding_head_attention_is_the_layers_own_and_the_loss_teaches_it(data, tiny):
    from molmoact2.models.nano.grounding import HeadInputs, head_attention
    from molmoact2.models.nano.train_step import build_example, collate, compute_losses

    model, proc = tiny
    data.grounding = True
    try:
        items = [q for q in data.qa if q["kind"] == "point"][:2]
        examples = [build_example(model, proc, **data.qa_inputs(q)) for q in items]
    finally:
        data.grounding = False
    for ex, q in zip(examples, items):
        g = ex["grounding"]
        ids = ex["input_ids"].tolist()
        assert all(ids[p] == model.config.image_patch_id for p in g["image_positions"])
        assert g["target"].sum() == pytest.approx(1.0) and g["target"].shape == (len(g["image_positions"]),)
        # the query positions predict the first point's digits (their labels are the coordinate tokens)
        want = spatial.parse_answer(q["answer"], strict=True).points[0]
        spelled = "".join(proc.tokenizer.decode([ids[p + 1]]) for p in g["query_positions"])
        assert spelled.split() == [str(int(round(want.x))), str(int(round(want.y)))]
    batch = collate(examples, proc)
    # The recomputed probabilities, applied to the layer's values, give exactly that head's attention output.
    layer, head = 1, 0
    attn = model.lm.layers[layer].self_attn
    seen = {}
    hook = attn.o_proj.register_forward_pre_hook(lambda _m, args: seen.update(y=args[0]))
    cache = model.new_cache()
    try:
        with torch.no_grad(), HeadInputs(model, layer) as captured:
            model.forward(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], cache=cache)
    finally:
        hook.remove()
    g = batch["grounding"]
    probs = head_attention(captured, cache, batch["attention_mask"].bool(), g["rows"], g["queries"], head)
    values = cache.values[layer][g["rows"], head // (attn.n_heads // attn.n_kv)]
    mixed = torch.einsum("nt,ntd->nd", probs, values)
    assert torch.allclose(mixed, seen["y"][g["rows"], g["queries"], :attn.head_dim], atol=1e-5)
    # A few steps on this batch move that head's attention onto the objects (the loss can fail to fall).
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        first = None
        for _ in range(15):
            losses = compute_losses(model, batch, ground_weight=1.0, ground_layer=layer, ground_head=head)
            first = first if first is not None else float(losses["ground_loss"].detach())
            opt.zero_grad()
            losses["ground_loss"].backward()
            opt.step()
        last = compute_losses(model, batch, ground_weight=1.0, ground_layer=layer, ground_head=head)["ground_loss"]
        last = float(last.detach())
    finally:
        model.load_state_dict(before)  # the module-scoped model stays as the other tests expect it
    assert last < 0.8 * first, (first, last)
    with pytest.raises(ValueError, match="grounding layer 9"):
        compute_losses(model, batch, ground_weight=1.0, ground_layer=9)


def test_demo_frames_record_where_the_named_object_is(data, data_dir):
    from molmoact2.training.nano_data import grid_pixel_counts

    ep = data.episodes[0]
    n = len(ep["action"])
    assert ep["target_px48"].shape == (n, 48, 48) and ep["target_px48"].dtype == np.uint8
    target = json.loads((data_dir / "meta.json").read_text())["episodes"][0]["target"]
    # On the frames whose segmentation the cache keeps, the counts are those of the named object's label.
    checked = 0
    for q in data.qa:
        if q["kind"] == "point" and q["question"] == spatial.point_prompt(f"the {target}"):
            seg = data.qa_segmentation(q)
            assert np.array_equal(ep["target_px48"][q["frame"]], grid_pixel_counts(seg == q["labels"][0]))
            assert ep["target_px48"][q["frame"]].sum() == (seg == q["labels"][0]).sum() > 0
            checked += 1
    assert checked >= 1


def test_action_grounding_targets_the_state_tokens_and_reaches_the_loss(data, tiny):
    from molmoact2.models.nano.train_step import build_example, collate, compute_losses

    model, proc = tiny
    ep = data.episodes[0]
    f = int(np.flatnonzero(ep["target_px48"].reshape(len(ep["action"]), -1).any(1))[0])
    data.ground_actions = True
    try:
        kw = data.frame_inputs("action", 0, f)
        assert np.array_equal(kw["ground_mask"], ep["target_px48"][f])
        assert "ground_mask" not in data.frame_inputs("depth", 0, f)  # no action target, no action grounding
        # --ground-actions-first N: only the first N frames are grounded, and half of the action examples come from them
        late = int(np.flatnonzero(ep["target_px48"].reshape(len(ep["action"]), -1).any(1))[-1])
        data.ground_first = late
        try:
            assert "ground_mask" not in data.frame_inputs("action", 0, late)
            rng = np.random.default_rng(0)
            frames = [data.example_inputs("action", rng)["state"] for _ in range(400)]
            early = np.mean([any(np.array_equal(s, x) for x in ep["state"][:late]) for s in frames])
            assert 0.5 + 0.5 * late / len(ep["action"]) - 0.1 < early < 0.5 + 0.5 * late / len(ep["action"]) + 0.1
        finally:
            data.ground_first = 0
        saved = ep.pop("target_px48")
        try:
            with pytest.raises(ValueError, match="rebuild it with `molmoact2 train data`"):
                data.frame_inputs("action", 0, f)
        finally:
            ep["target_px48"] = saved
    finally:
        data.ground_actions = False
    ex = build_example(model, proc, **kw)
    g = ex["grounding"]
    ids = ex["input_ids"].tolist()
    tid = proc.token_ids
    queries = g["query_positions"]
    assert ids[queries[0]] == tid.state_start_token_id and ids[queries[-2]] == tid.state_end_token_id
    assert queries[-1] == int((ex["labels"] == -100).sum()) - 1  # the prompt's last token
    assert all(ids[p] == model.config.image_patch_id for p in g["image_positions"])
    rows, cols = proc.image_grid
    want = ep["target_px48"][f].reshape(rows, 48 // rows, cols, 48 // cols).sum((1, 3)).ravel()
    assert np.allclose(g["target"], want / want.sum())
    losses = compute_losses(model, collate([ex], proc), ground_weight=1.0, ground_layer=1)
    assert torch.isfinite(losses["ground_loss"]) and losses["ground_loss"] > 0
    with pytest.raises(ValueError, match="an action target"):
        build_example(model, proc, **(data.frame_inputs("depth", 0, f) | {"ground_mask": kw["ground_mask"]}))


def test_train_nano_logs_the_grounding_loss(data_dir, scenes_dir, tmp_path):
    out = tmp_path / "g"
    assert _train(["--data", str(data_dir), str(scenes_dir), "--out", str(out), "--steps", "2", "--mix", QA_ONLY,
                   "--qa-kinds", "point", "--ground-weight", "0.5", "--ground-layer", "1"]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(r["ground_loss"] > 0 and r["loss"] > r["qa_ce"] for r in rows)
    cfg = json.loads((out / "training_args.json").read_text())["config"]
    assert (cfg["ground_weight"], cfg["ground_layer"], cfg["ground_head"]) == (0.5, 1, 0)
    # --ground-actions: action-only batches get a grounding loss too; without a weight it is refused.
    out = tmp_path / "ga"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "2", "--mix", "action=1,depth=0,"
                   "depth_action=0,qa=0", "--ground-weight", "0.5", "--ground-layer", "1", "--ground-actions"]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(r["ground_loss"] > 0 for r in rows)
    with pytest.raises(ValueError, match="needs a grounding weight"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "gb"), "--steps", "1", "--ground-actions"])
    with pytest.raises(ValueError, match="needs --ground-actions"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "gc"), "--steps", "1", "--ground-weight", "1",
                "--ground-actions-first", "8"])


def test_reach_target_is_the_objects_centre_and_the_loss_trains_the_value_the_expert_reads(data, tiny):
    from molmoact2.models.nano.reach import reach_target, standardizer
    from molmoact2.models.nano.train_step import build_example, collate, compute_losses

    mask = np.zeros((48, 48), bool)
    mask[0:4, 44:48] = True  # top-right corner: x near +1, y near -1
    assert np.allclose(reach_target(mask), [2 * 46 / 48 - 1, 2 * 2 / 48 - 1])
    with pytest.raises(ValueError, match="hidden"):
        reach_target(np.zeros((48, 48), bool))
    # standardized: columns spread wide, rows narrow (as in our camera) -> both come out with sd 1; hidden skipped
    rng = np.random.default_rng(0)
    masks = [np.zeros((48, 48), bool) for _ in range(200)]
    for m in masks[:-1]:
        r, c = rng.integers(20, 26), rng.integers(2, 46)
        m[r:r + 2, c:c + 2] = True
    mean, sd = standardizer(masks)
    zs = np.array([(reach_target(m) - mean) / sd for m in masks[:-1]])
    assert np.allclose(zs.mean(0), 0, atol=1e-5) and np.allclose(zs.std(0), 1, atol=1e-4) and sd[0] > 3 * sd[1]
    model, proc = tiny
    ep = data.episodes[0]
    f = int(np.flatnonzero(ep["target_px48"].reshape(len(ep["action"]), -1).any(1))[0])
    assert "reach_xy" not in data.frame_inputs("action", 0, f)  # off unless asked
    data.use_reach()
    try:
        kw = data.frame_inputs("action", 0, f)
        mean, sd = data.reach_stats
        assert np.allclose(kw["reach_xy"] * sd + mean, reach_target(ep["target_px48"][f]))
        masks = [m for x in data.episodes for m in x["target_px48"]]
        assert np.allclose(data.reach_stats[0], np.mean([reach_target(m) for m in masks if m.any()], 0))
        saved = ep.pop("target_px48")
        try:
            with pytest.raises(ValueError, match="rebuild it with `molmoact2 train data`"):
                data.use_reach()
        finally:
            ep["target_px48"] = saved
    finally:
        data.reach = False
    ex = build_example(model, proc, **kw)
    assert ex["reach"]["position"] == int((ex["labels"] == -100).sum()) - 1  # the prompt's last token
    batch = collate([ex], proc)
    model.zero_grad()
    losses = compute_losses(model, batch, reach_weight=1.0, reach_layer=-1)
    losses["reach_loss"].backward()
    # the loss reaches the last layer's value projection (what the expert's last block reads), not just any weight
    assert model.lm.layers[-1].self_attn.v_proj.weight.grad.abs().sum() > 0
    # and measures those two channels: set them to the target and it is zero
    from molmoact2.models.nano.reach import reach_loss

    cache = model.new_cache()
    with torch.no_grad():
        model.forward(batch["input_ids"], batch["attention_mask"], batch.get("pixel_values"), cache=cache)
        cache.values[-1][0, 0, ex["reach"]["position"], :2] = torch.as_tensor(ex["reach"]["target"])
    assert float(reach_loss(cache, -1, batch["reach"])) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="reach layer 9"):
        reach_loss(cache, 9, batch["reach"])
    with pytest.raises(ValueError, match="robot examples"):
        build_example(model, proc, style="qa", images=kw["images"][:1], question="Point to the bin\n",
                      answer="x", reach_xy=kw["reach_xy"])


def test_train_nano_logs_the_reach_loss(data_dir, tmp_path):
    out = tmp_path / "r"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "2", "--mix", "action=1,depth=0,"
                   "depth_action=0,qa=0", "--reach-weight", "0.5", "--reach-layer", "1"]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(r["reach_loss"] > 0 for r in rows)
    cfg = json.loads((out / "training_args.json").read_text())["config"]
    assert (cfg["reach_weight"], cfg["reach_layer"]) == (0.5, 1)
    with pytest.raises(ValueError, match="expected >= 0"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "rb"), "--steps", "1", "--reach-weight", "-1"])


def test_expert_grounding_supervises_the_attention_one_expert_head_really_uses(data, tiny, data_dir, tmp_path):
    from molmoact2.models.nano.grounding import ExpertCrossQueries, expert_head_attention
    from molmoact2.models.nano.train_step import build_example, collate, compute_losses

    model, proc = tiny
    expert = model.action_expert
    ep = data.episodes[0]
    f = int(np.flatnonzero(ep["target_px48"].reshape(len(ep["action"]), -1).any(1))[0])
    data.ground_actions = True
    try:
        grounded = data.frame_inputs("action", 0, f)
    finally:
        data.ground_actions = False
    plain = data.frame_inputs("action", 0, f)
    assert "ground_mask" not in plain
    # two samples, only the second grounded: the loss must pick the right one out of the flow loss's batch
    batch = collate([build_example(model, proc, **plain), build_example(model, proc, **grounded)], proc)

    # The probabilities are the attention the block used: times that head's values they give its output.
    cache = model.new_cache()
    with torch.no_grad():
        model.forward(batch["input_ids"], batch["attention_mask"], batch.get("pixel_values"), cache=cache)
        contexts = [cache.context(layer) for layer in range(len(expert.blocks))]
        mask = batch["attention_mask"].bool()
        seen = {}
        hook = expert.blocks[0].cross_out.register_forward_pre_hook(lambda _m, args: seen.setdefault("y", args[0]))
        with ExpertCrossQueries(expert, 0, 1) as captured:
            expert(torch.randn(2, 8, model.config.max_action_dim), torch.tensor([0.3, 0.7]),
                   expert.project_contexts(contexts), mask)
        hook.remove()
        probs = expert_head_attention(captured, contexts[0][0], mask, torch.tensor([0, 1]))
        hd = expert.blocks[0].head_dim
        v = expert.blocks[0]._heads(expert.context_norm(expert.context_v_proj(contexts[0][1])))[:, 1]
        assert probs.shape == (1, 2, 8, mask.shape[1])
        assert torch.allclose(probs[0] @ v, seen["y"][:, :, hd:2 * hd], atol=1e-5)
        assert float(probs[0, 0, :, ~mask[0]].sum()) == 0.0  # padding is never attended

    model.zero_grad()
    losses = compute_losses(model, batch, num_noise_samples=2, expert_ground_weight=1.0, expert_ground_block=0,
                            expert_ground_head=1)
    assert torch.isfinite(losses["expert_ground_loss"]) and losses["expert_ground_loss"] > 0
    assert "ground_loss" not in losses  # the LM head is not asked
    losses["expert_ground_loss"].backward()
    assert expert.blocks[0].cross_q.weight.grad.abs().sum() > 0  # the head's queries learn ...
    assert expert.context_k_proj.weight.grad.abs().sum() > 0  # ... and the shared key projection
    assert expert.blocks[1].cross_q.weight.grad is None  # later blocks do not shape block 0's attention
    assert "expert_ground_loss" not in compute_losses(model, batch)  # off unless asked

    # the CLI: logged per step, recorded in training_args.json; a negative weight is refused. --ground-actions-first
    # works with it too (no --ground-actions needed): the expert's head is then grounded on early frames only.
    out = tmp_path / "xg"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "2", "--mix", "action=1,depth=0,"
                   "depth_action=0,qa=0", "--expert-ground-weight", "0.5", "--expert-ground-block", "0",
                   "--expert-ground-head", "1", "--ground-actions-first", "8"]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["expert_ground_loss"] > 0 for r in rows)
    cfg = json.loads((out / "training_args.json").read_text())["config"]
    assert (cfg["expert_ground_weight"], cfg["expert_ground_block"], cfg["expert_ground_head"]) == (0.5, 0, 1)
    assert (cfg["ground_actions"], cfg["ground_actions_first"]) == (False, 8)
    with pytest.raises(ValueError, match="expected >= 0"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "xb"), "--steps", "1", "--expert-ground-weight", "-1"])


def test_takeover_near_hands_over_where_the_jaw_reaches_the_object():
    """--takeover-near-cm: the roll-in stops at the first chunk boundary (from MIN on) with the jaw that near the
    named object, else after MAX chunks; a radius no arm reaches runs every chunk, one it always meets stops at MIN."""
    from molmoact2.sim import make_env
    from molmoact2.training.takeover import PolicyRollIn, TakeoverConfig, jaw_to_target_m

    env = make_env("touch", image_size=RENDER, depth=False, segmentation=False)
    try:
        env.reset(300)
        home_gap = jaw_to_target_m(env)
        # 15-tick chunks: the shipped Nano's own 30 finish a touch within two
        far = PolicyRollIn(TakeoverConfig(policy="nano", min_chunks=1, max_chunks=3, near_m=0.9,
                                          n_action_steps=15))(env, 300)
        assert far["ended"] is None and far["policy_chunks"] == 1  # already within 90 cm after one chunk
        assert far["policy_ticks"] == 15
        tiny = PolicyRollIn(TakeoverConfig(policy="nano", min_chunks=1, max_chunks=2, near_m=1e-4,
                                           n_action_steps=15))(env, 300)
        assert tiny["policy_chunks"] == 2 or tiny["ended"] is not None
        assert tiny["jaw_to_target_m"] == pytest.approx(jaw_to_target_m(env), abs=1e-4)
        assert 0.05 < home_gap < 0.5  # the jaw starts well away from the object: the measure is not always ~0
    finally:
        env.close()
    with pytest.raises(ValueError, match=r"expected a distance in metres in \[0, 1\)"):
        TakeoverConfig(policy="nano", near_m=4.0)  # centimetres passed as metres


def _expert_finishes(env, max_ticks: int) -> list[float]:
    """A scripted expert made now runs the episode to success (asserted); returns its gripper commands."""
    inst, expert, grips = env.instance, env.expert(), []
    while not env.task.success(env, inst) and len(grips) < max_ticks:
        chunk = expert.act(None)
        assert len(chunk), "the expert finished without a success"
        for action in chunk:
            env.step(action, observe=False)
            grips.append(float(action[5]))
    assert env.task.success(env, inst), len(grips)
    return grips


def test_takeover_lifted_hands_over_with_the_object_in_the_jaw_and_the_expert_carries_it():
    """--takeover-lifted-cm: the roll-in stops at the first chunk boundary where the named object is held that high;
    a pick expert made then starts from the lift (no re-approach, the jaw never opens before the bin) and succeeds.
    The roll-in is driven by the scripted expert here (the shipped Nano lifts too rarely for a test)."""
    from molmoact2.runner import ExpertPolicy
    from molmoact2.sim import make_env
    from molmoact2.sim.expert import GRIP_OPEN, object_held
    from molmoact2.training.takeover import PolicyRollIn, TakeoverConfig

    env = make_env("pick_place", image_size=RENDER, depth=False, segmentation=False)
    try:
        roll_in = PolicyRollIn(TakeoverConfig(policy="nano", min_chunks=1, max_chunks=20, lifted_m=0.02))
        roll_in.policy = ExpertPolicy(env)
        info = roll_in(env, 10000)
        inst = env.instance
        assert info["ended"] is None and info["held"], info
        assert object_held(env, inst.target, inst.start_pos, 0.02)
        grips = _expert_finishes(env, max_ticks=400)
        # closed until the release over the bin: the first open command comes after the object is there
        first_open = next(i for i, g in enumerate(grips) if g > GRIP_OPEN / 2)
        assert first_open > 20, first_open  # a re-approach would open at once
    finally:
        env.close()
    with pytest.raises(ValueError, match=r"expected a height in metres in \[0, 0.5\)"):
        TakeoverConfig(policy="nano", lifted_m=2.0)  # centimetres passed as metres
    with pytest.raises(ValueError, match="not several"):
        TakeoverConfig(policy="nano", near_m=0.04, lifted_m=0.02)


def test_takeover_missed_hands_over_only_after_a_grasp_that_closed_on_nothing():
    """--takeover-missed: a roll-in policy that shuts the jaw where it stands (a grasp that missed) is handed over
    after its first chunk and the expert made then re-opens, grasps and succeeds; a roll-in that grasps the object
    (the scripted expert) is never handed over ("no_miss"), so no restart is recorded from a held object."""
    from molmoact2.models.base import Step
    from molmoact2.runner import ExpertPolicy
    from molmoact2.sim import make_env
    from molmoact2.sim.expert import GRIP_OPEN, object_held
    from molmoact2.training.takeover import MISSED_GRIP_UNITS, PolicyRollIn, TakeoverConfig, grasp_missed

    class ShutInPlace:  # holds the arm still and closes the jaw: the miss, without a trained policy
        name = "shut"

        def reset(self) -> None:
            pass

        def predict(self, obs):
            chunk = np.repeat(np.asarray(obs.state, np.float32)[None, :6], 30, axis=0)
            chunk[:, 5] = 0.0
            return Step(actions=chunk, n_executed=30)

    env = make_env("pick_place", image_size=RENDER, depth=False, segmentation=False)
    try:
        roll_in = PolicyRollIn(TakeoverConfig(policy="nano", min_chunks=1, max_chunks=6, missed=True))
        roll_in.policy = ShutInPlace()
        info = roll_in(env, 10000)
        assert info["ended"] is None and info["policy_chunks"] == 1 and not info["held"], info
        assert grasp_missed(env) and env.state()[5] <= MISSED_GRIP_UNITS
        grips = _expert_finishes(env, max_ticks=450)
        assert max(grips[:30]) > GRIP_OPEN / 2  # the re-grasp opens the jaw first

        roll_in.policy = ExpertPolicy(env)  # grasps on its first try; 4 chunks end with the object in the jaw
        roll_in.cfg = TakeoverConfig(policy="nano", min_chunks=1, max_chunks=4, missed=True)
        info = roll_in(env, 10000)
        assert info["ended"] == "no_miss" and object_held(env, env.instance.target, env.instance.start_pos), info
        assert not grasp_missed(env) and env.state()[5] > 2 * MISSED_GRIP_UNITS  # a held object keeps the jaw apart
        assert roll_in.counts == {"taken_over": 1, "no_miss": 1}
    finally:
        env.close()
    with pytest.raises(ValueError, match="one of them, not several"):
        TakeoverConfig(policy="nano", near_m=0.04, missed=True)
    from molmoact2.cli import main

    with pytest.raises(ValueError, match="--takeover-missed: set a roll-in policy with --takeover-policy"):
        main(["train", "data", "--out", "/nonexistent/never", "--takeover-missed"])


def test_a_takeover_that_never_qualifies_runs_out_of_seeds_and_names_the_flag(tmp_path):
    """A touch roll-in waiting for a lift never hands over (the episode ends first), so no demo is recorded; the
    build stops after episodes x --max-attempts-factor seeds and says which flag raises the budget."""
    from molmoact2.training.nano_data import DataConfig, build_dataset
    from molmoact2.training.takeover import TakeoverConfig

    takeover = TakeoverConfig(policy="nano", min_chunks=1, max_chunks=30, lifted_m=0.02)
    cfg = DataConfig(tasks=("touch",), episodes_per_task=1, first_seed=300, render_size=RENDER, store_size=64,
                     qa_frames_per_episode=1, takeover=takeover, max_attempts_factor=1)
    with pytest.raises(RuntimeError, match=r"only 0/1 successful touch episodes in 1 seeds .*--max-attempts-factor"):
        build_dataset(cfg, tmp_path / "never")
    from molmoact2.cli import main

    with pytest.raises(ValueError, match="--takeover-lifted-cm: set a roll-in policy with --takeover-policy"):
        main(["train", "data", "--out", str(tmp_path / "none"), "--takeover-lifted-cm", "2"])
    with pytest.raises(ValueError, match=r"--max-attempts-factor: expected at least 1"):
        main(["train", "data", "--out", str(tmp_path / "none"), "--max-attempts-factor", "0"])


def test_offsets_are_object_minus_jaw_before_each_tick():
    from molmoact2.training.nano_data import object_offsets_m

    jaw = [np.array([0.0, 0.0, 0.1]), np.array([0.01, 0.0, 0.1]), np.array([0.02, 0.0, 0.1])]
    after = [np.array([0.1, 0.0, 0.0]), np.array([0.1, 0.0, 0.0]), np.array([0.2, 0.0, 0.0])]  # moved in tick 2
    got = object_offsets_m(jaw, after)
    # frame 2's observation came before the tick that moved the object: it still sees it at 0.1
    assert np.allclose(got, [[0.1, 0, -0.1], [0.09, 0, -0.1], [0.08, 0, -0.1]])
    with pytest.raises(ValueError, match="same length"):
        object_offsets_m(jaw, after[:2])


def test_the_cache_records_the_object_from_the_jaw_and_the_offset_loss_trains_the_expert(data, tiny, data_dir,
                                                                                         tmp_path):
    from molmoact2.models.nano.offset import ExpertStream, offset_loss
    from molmoact2.models.nano.train_step import build_example, collate, compute_losses
    from molmoact2.sim.env import make_env

    ep = data.episodes[0]
    offset = ep["target_offset_m"]
    assert offset.shape == (len(ep["action"]), 3) and offset.dtype == np.float32
    # object = offset + jaw (the jaw from the recorded joint state): the object rests until the touch, so that sum
    # stays put over the first frames, while the jaw closes in on it
    env = make_env("touch", seed=0, image_size=64)
    try:
        env.reset(0)
        jaw = env.kinematics(0).path_world(ep["state"][:, :6])
    finally:
        env.close()
    early = offset[:8] + jaw[:8]
    assert np.abs(early - early[0]).max() < 2e-3
    assert np.linalg.norm(offset[-1]) < 0.5 * np.linalg.norm(offset[0])

    model, proc = tiny
    assert "offset" not in data.frame_inputs("action", 0, 0)  # off unless asked
    data.use_offset()
    try:
        kw = data.frame_inputs("action", 0, 3)
    finally:
        data.offset_stats = None
    mean, sd = np.concatenate([offset]).mean(0), offset.std(0)  # the fixture has one episode
    assert np.allclose(kw["offset"][0] * (sd + 1e-6) + mean, offset[3], atol=1e-5)
    assert np.allclose(kw["offset"][-1] * (sd + 1e-6) + mean, offset[min(3 + 29, len(offset) - 1)], atol=1e-5)
    plain = {k: v for k, v in kw.items() if k != "offset"}
    # two samples, only the second with a target: the loss must take the right row of the flow loss's batch
    batch = collate([build_example(model, proc, **plain), build_example(model, proc, **kw)], proc)
    assert batch["offset"]["rows"].tolist() == [1]
    model.zero_grad()
    losses = compute_losses(model, batch, num_noise_samples=2, offset_weight=1.0)
    assert torch.isfinite(losses["offset_loss"]) and losses["offset_loss"] > 0
    losses["offset_loss"].backward()
    # a random expert's adaLN-Zero gates are 0, so the gradient enters through them (and the input projection)
    assert model.action_expert.blocks[-1].adaLN_modulation[1].weight.grad.abs().sum() > 0
    assert model.action_expert.input_proj.weight.grad.abs().sum() > 0
    assert "offset_loss" not in compute_losses(model, batch)  # off unless asked
    # it measures the designated channels of the right sample: set them to the target and it is zero
    stream = torch.randn(4, model.config.max_action_horizon, 16)  # 2 draws x 2 samples
    target = torch.as_tensor(batch["offset"]["target"])
    stream.view(2, 2, *stream.shape[1:])[:, 1, :, :3] = target[0]
    assert float(offset_loss(stream, 2, torch.tensor([1]), target, batch["offset"]["mask"])) == pytest.approx(0, abs=1e-9)
    assert float(offset_loss(stream, 2, torch.tensor([0]), target, batch["offset"]["mask"])) > 0.1
    with pytest.raises(ValueError, match="continuous actions"):
        build_example(model, proc, **{**plain, "style": "depth", "depth_bins": ep["depth_buffer"][3],
                                      "offset": kw["offset"]})
    with ExpertStream(model.action_expert) as grabbed:
        compute_losses(model, batch)
    assert grabbed.stream.shape[:2] == (2, model.config.max_action_horizon)

    # the CLI, with --expert-only: logged per step, recorded; refused without an action share or on an old cache
    start = tmp_path / "start"
    assert _train(["--data", str(data_dir), "--out", str(start), "--steps", "1"]) == 0
    out = tmp_path / "off"
    assert _train(["--data", str(data_dir), "--out", str(out), "--steps", "2", "--init-from", str(start),
                   "--mix", "action=1,depth=0,depth_action=0,qa=0", "--expert-only", "--offset-weight", "0.5"]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["offset_loss"] > 0 for r in rows)
    assert json.loads((out / "training_args.json").read_text())["config"]["offset_weight"] == 0.5
    with pytest.raises(ValueError, match="expected >= 0"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "ob"), "--steps", "1", "--offset-weight", "-1"])
    with pytest.raises(ValueError, match="action=0 and depth_action=0"):
        _train(["--data", str(data_dir), "--out", str(tmp_path / "oc"), "--steps", "1", "--offset-weight", "1",
                "--mix", "action=0,depth=1,depth_action=0,qa=0"])
    saved = ep.pop("target_offset_m")
    try:
        with pytest.raises(ValueError, match="rebuild it with `molmoact2 train data`"):
            data.use_offset()
    finally:
        ep["target_offset_m"] = saved
