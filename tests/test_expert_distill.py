"""`molmoact2 train distill-expert`: the student expert learns to land in fewer Euler steps where the teacher's
own integration lands; nothing but the expert changes; runs resume exactly; bad settings are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import STATE, TASK, image, one_thread_fixture, randomize_  # noqa: E402

one_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from molmoact2.cli import main

    out = tmp_path_factory.mktemp("distill") / "data"
    assert main(["train", "data", "--out", str(out), "--episodes-per-task", "1", "--tasks", "touch",
                 "--render-size", "96", "--store-size", "64", "--think-stride", "5",
                 "--qa-frames-per-episode", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def teacher_dir(data_dir, tmp_path_factory):
    """A tiny random Nano whose expert is live (random adaLN and output layers: a curved velocity field)."""
    from molmoact2.models.nano.factory import build_random_nano, save_checkpoint

    stats = json.loads((data_dir / "norm_stats.json").read_text())
    model, processor = build_random_nano("tiny", seed=0, norm_stats=stats)
    randomize_(model.action_expert, seed=1, std=0.2)
    model.config.flow_matching_num_steps = 5
    return save_checkpoint(model, processor, tmp_path_factory.mktemp("teacher") / "t", dtype="float16")


def _distill(data_dir, teacher_dir, out, *extra):
    from molmoact2.cli import main

    return main(["train", "distill-expert", "--teacher", str(teacher_dir), "--data", str(data_dir), "--out", str(out),
                 "--batch-size", "4", "--threads", "1", "--lr", "3e-3", "--warmup-steps", "1", *extra])


def _held_out_gap(checkpoint, teacher_dir, data_dir, student_steps):
    """The end-point MSE (student K steps vs teacher 5) on one fixed batch that no training step drew."""
    from molmoact2.training.expert_distill import distill_loss, sample_contexts
    from molmoact2.training.nano_examples import NanoTrainData
    from molmoact2.training.nano_trainer import load_weights

    student, processor = load_weights(checkpoint)
    teacher, _ = load_weights(teacher_dir)
    data = NanoTrainData.load(data_dir, progress=False)
    contexts, mask = sample_contexts(student, processor, data, np.random.default_rng(12345), 6, 0.5)
    x0 = torch.randn((6, 30, 32), generator=torch.Generator().manual_seed(7))
    dim_mask = torch.zeros(32)
    dim_mask[:6] = 1.0
    x0 = x0 * dim_mask
    with torch.no_grad():
        loss, _ = distill_loss(student.action_expert, teacher.action_expert, contexts, mask, x0, dim_mask,
                               student_steps, 5)
    return float(loss)


def test_distilled_expert_lands_nearer_the_teacher_and_nothing_else_changes(data_dir, teacher_dir, tmp_path):
    from safetensors.torch import load_file

    from molmoact2.models.nano import load_nano

    out = tmp_path / "s"
    assert _distill(data_dir, teacher_dir, out, "--student-steps", "1", "--steps", "12", "--save-every", "6") == 0
    before = _held_out_gap(teacher_dir, teacher_dir, data_dir, 1)  # the teacher itself taking one step
    after = _held_out_gap(out, teacher_dir, data_dir, 1)
    assert after < 0.7 * before, (before, after)
    wt, ws = load_file(str(teacher_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert wt.keys() == ws.keys()
    changed = {k for k in wt if not torch.equal(wt[k], ws[k])}
    assert changed and all(k.startswith("action_expert.") for k in changed)
    assert json.loads((out / "config.json").read_text())["flow_matching_num_steps"] == 1
    args = json.loads((out / "training_args.json").read_text())
    assert args["config"]["student_steps"] == 1 and args["init_from"]["path"] == str(teacher_dir)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13)) and all(np.isfinite(r["distill_loss"]) for r in log)
    # the checkpoint acts with its own step count: one Euler step, two denoising states
    policy = load_nano(out)
    res = policy.model.predict_action(processor=policy.processor, images=[image(0, 64, 64), image(1, 64, 64)], task=TASK,
                                      state=STATE, norm_tag=sorted(policy.model.norm_stats["metadata_by_tag"])[0],
                                      inference_action_mode="continuous")
    assert res["denoising_states_normalized"].shape[0] == 2 and np.isfinite(res["actions"].numpy()).all()


def test_resume_continues_exactly_and_bad_settings_are_refused(data_dir, teacher_dir, tmp_path):
    from safetensors.torch import load_file

    straight, split = tmp_path / "a", tmp_path / "b"
    assert _distill(data_dir, teacher_dir, straight, "--steps", "4", "--save-every", "2") == 0
    assert _distill(data_dir, teacher_dir, split, "--steps", "2", "--save-every", "2") == 0
    assert _distill(data_dir, teacher_dir, split, "--steps", "4", "--save-every", "2", "--resume") == 0
    wa, wb = load_file(str(straight / "model.safetensors")), load_file(str(split / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((split / "training_args.json").read_text())["resumes"][0]["from_step"] == 2
    with pytest.raises(FileExistsError, match="--resume"):
        _distill(data_dir, teacher_dir, straight, "--steps", "4")
    with pytest.raises(ValueError, match="differ from the saved run"):
        _distill(data_dir, teacher_dir, split, "--steps", "6", "--student-steps", "1", "--resume")
    with pytest.raises(ValueError, match="must be fewer than teacher_steps"):
        _distill(data_dir, teacher_dir, tmp_path / "c", "--student-steps", "5")
