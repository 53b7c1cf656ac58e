"""Spatial reasoning session: a random tiny Nano answers about a real simulator scene (whatever it says is
parsed, never raising), depth codes come from the sim depth, points lift to 3-D like back-projection, the
result is a readable .rrd, and a missing `nano` says so plainly."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2 import spatial_session as ss
from molmoact2.models.base import Step


@pytest.fixture(scope="module")
def scene():
    return ss.sim_scene("touch", seed=0)


@pytest.fixture(scope="module")
def nano_spec(tmp_path_factory):
    from molmoact2.models.nano.factory import make_random_checkpoint

    directory = tmp_path_factory.mktemp("nano") / "nano_random"
    make_random_checkpoint(directory)
    return f"nano:{directory}"


class _FixedAnswer:
    """A policy that answers with a fixed Molmo2-ER string: a random Nano points nowhere, and the parse,
    drawing and 3-D lifting need an answer with known points to be checked."""

    def __init__(self, text: str):
        self.text = text

    def ask(self, images, question, *, max_new_tokens=64):
        return Step(backend="fixed", answer_text=self.text, generated_text=self.text, timings_ms={"total_ms": 1.0})


def test_sim_scene_has_depth_and_camera(scene):
    f = scene.frame
    assert scene.source == "sim" and f.rgb.shape == (224, 224, 3)
    assert f.depth_m.shape == (224, 224) and np.isfinite(f.depth_m).any()
    assert f.K.shape == (3, 3) and f.T_world_cam.shape == (4, 4)


def test_random_nano_answers_and_records(scene, nano_spec, tmp_path):
    from molmoact2.viz.inspect import summarize_rrd

    policy, err = ss.get_policy(nano_spec)
    assert err is None, err
    question = ss.question_from_template("point", "the red cube")
    assert question.startswith("Point to the red cube")
    result = ss.ask_scene(policy, scene, question)
    # Whatever the random model says is kept verbatim and parsed; problems are listed, never raised.
    assert result.answer.raw == result.step.answer_text
    assert isinstance(result.problems, tuple)
    assert result.step.prompt_text == question and result.step.backend == "nano"
    assert result.drawn.shape == scene.rgb.shape and result.drawn.dtype == np.uint8
    assert result.depth_bins.shape == (100,) and 0 <= result.depth_bins.min() <= result.depth_bins.max() <= 127
    assert result.depth_decoded.ndim == 2
    assert "Answer" in result.summary_md
    rrd = ss.save_spatial_rrd(result, tmp_path / "ask.rrd")
    entities = summarize_rrd(rrd)["entities"]
    for path in ("/cameras/front/rgb", "/depth/codes", "/depth/decoded", "/text/answer", "/text/prompt"):
        assert path in entities, sorted(entities)


def test_where_the_head_looked(scene, nano_spec):
    policy, err = ss.get_policy(nano_spec)
    assert err is None, err
    question = ss.question_from_template("point", "the red cube")
    # Teacher-forced over a given answer (the random model's own rarely holds a point): a heatmap on the image,
    # and the caption says this checkpoint's head was never taught to look at the named object.
    image, caption = ss.head_overlay(policy, scene.rgb, question, '<points coords="1 1 500 420">red cube</points>')
    assert image.shape == scene.rgb.shape and image.dtype == np.uint8 and not np.array_equal(image, scene.rgb)
    assert "Head 1.0" in caption and "NOT trained" in caption  # the tiny test model has 2 layers
    assert ss.grounded_head(policy) == (1, 0, False)
    image, caption = ss.head_overlay(policy, scene.rgb, question, "There are none.")
    assert image is None and "no point" in caption
    image, caption = ss.head_overlay(_FixedAnswer("x"), scene.rgb, question, "There are none.")
    assert image is None and "Nano checkpoints only" in caption
    # ask_scene carries it, and a failure to draw it never hides the answer
    result = ss.ask_scene(policy, scene, question)
    assert result.head_caption.startswith(("Head 1.0", "Where the model looked: the answer has no point"))


def test_points_are_drawn_lifted_and_logged(scene, tmp_path):
    from molmoact2.viz.inspect import summarize_rrd
    from molmoact2.viz.layout import camera_points

    text = '<points coords="1 1 500 600 2 250 700">red cube</points>'
    result = ss.ask_scene(_FixedAnswer(text), scene, "Point to the red cube")
    assert result.problems == ()
    np.testing.assert_allclose(result.points_px, [[112.0, 134.4], [56.0, 156.8]], atol=1e-4)
    assert result.points_world.shape == (2, 3)
    assert not np.array_equal(result.drawn, scene.rgb)  # the points are drawn
    rrd = ss.save_spatial_rrd(result, tmp_path / "points.rrd")
    entities = summarize_rrd(rrd)["entities"]
    assert f"/{ss.SPATIAL_POINTS_ENTITY}" in entities, sorted(entities)
    assert f"/{camera_points('front')}" in entities, sorted(entities)


def test_lift_known_pixel_matches_backprojection(scene):
    from molmoact2.geometry.pointcloud import backproject_depth

    f = scene.frame
    h, w = f.depth_m.shape
    cloud, _ = backproject_depth(f.depth_m, f.K, f.T_world_cam)
    valid = np.isfinite(f.depth_m) & (f.depth_m > 0)
    rows, cols = np.nonzero(valid)
    i = len(rows) // 3
    r, c = int(rows[i]), int(cols[i])
    # spatial's pixel convention puts the centre of pixel (c, r) at (c + 0.5, r + 0.5)
    lifted = ss.lift_to_world(np.array([[c + 0.5, r + 0.5]], float), f, window=0)
    np.testing.assert_allclose(lifted[0], cloud[i], atol=1e-5)  # cloud is row-major over valid pixels
    # and re-projecting the lifted point lands on the same pixel
    from molmoact2.geometry.pointcloud import project_points

    np.testing.assert_allclose(project_points(lifted, f.K, f.T_world_cam)[0], [c, r], atol=1e-3)


def test_upload_has_no_depth_and_says_nano_is_sim_only(nano_spec):
    policy, err = ss.get_policy(nano_spec)
    assert err is None
    photo = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    result = ss.ask_scene(policy, ss.upload_scene(photo), ss.question_from_template("count", "cubes"))
    assert result.depth_bins is None and result.points_world is None
    assert ss.NANO_SIM_ONLY_NOTE in result.summary_md
    with pytest.raises(ValueError, match="no image uploaded"):
        ss.upload_scene(None)


def test_nano_not_shipped_is_said_plainly(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLMOACT2_NANO_DIR", str(tmp_path))
    policy, err = ss.get_policy("nano")
    assert policy is None and "no Nano checkpoint" in err
    msg = ss.format_load_error("nano", err)
    assert "Could not load" in msg and "Traceback" not in msg
    monkeypatch.delenv("MOLMOACT2_NANO_DIR")
    from molmoact2.models.registry import nano_default_dir

    if not (nano_default_dir() / "config.json").is_file():
        policy, err = ss.get_policy("nano")
        assert policy is None and "not shipped yet" in ss.format_load_error("nano", err)


def test_default_model_is_the_spatial_specialist_when_shipped(tmp_path, monkeypatch):
    from molmoact2.models import registry

    monkeypatch.setattr(registry, "REPO_NANO_ER_DIR", tmp_path / "absent")
    assert ss.default_spatial_spec() == "nano"
    policy, err = ss.get_policy("nano-er")  # asked for anyway: a message, not a crash
    assert policy is None and "no checkpoint at" in err and "use 'nano'" in err
    (tmp_path / "er").mkdir()
    (tmp_path / "er" / "config.json").write_text("{}")
    monkeypatch.setattr(registry, "REPO_NANO_ER_DIR", tmp_path / "er")
    assert ss.default_spatial_spec() == "nano-er"


def test_bad_inputs_are_refused_with_a_message():
    assert ss.get_policy("expert")[1].startswith("ValueError: 'expert'")
    with pytest.raises(ValueError, match="template"):
        ss.question_from_template("nope", "x")
    with pytest.raises(ValueError, match="unknown task"):
        ss.sim_scene("no_such_task")


def test_count_templates_ask_with_a_bare_plural():
    from molmoact2.spatial_session import plural_phrase, question_from_template

    assert plural_phrase("the red cube") == "red cubes"
    assert plural_phrase("a box") == "boxes"
    assert plural_phrase("cylinders") == "cylinders"
    assert question_from_template("count", "the red cube").startswith("How many red cubes are there?")
    assert "the red cube" in question_from_template("point", "the red cube")
