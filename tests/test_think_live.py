"""The Think debugger's live model source: a Nano (random tiny here) with depth reasoning in closed loop; its own
depth codes and update masks become the session, compared with the VQ-VAE codes of the true depth."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import one_thread_fixture  # noqa: E402

one_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def random_nano(tmp_path_factory):
    from molmoact2.models.nano.factory import make_random_checkpoint

    return make_random_checkpoint(tmp_path_factory.mktemp("nano") / "nano_random")


def test_live_think_session_holds_the_models_codes(random_nano):
    from app.tabs.think import SOURCES, load_session, true_codes

    sess, codec, _note = load_session(SOURCES[3], f"nano:{random_nano}", "touch", 10001, 3, "")
    assert len(sess) == 3 and sess.codes_source == "recorded depth_bins"
    assert sess.recorded_masks.shape == (3, 100) and sess.recorded_masks[0].all()  # first call: all 100 decoded
    truth = true_codes(sess, codec)
    assert truth.shape == (3, 100) and truth.dtype.kind == "i"
    # the truth is the VQ-VAE's code of each step's own depth map, not the model's prediction
    np.testing.assert_array_equal(truth[0], codec.encode(depth_m=sess.frames[0].depth_m))


def test_a_policy_without_depth_reasoning_is_refused(random_nano):
    from molmoact2.models.registry import load_policy
    from molmoact2.think_live import policy_think_steps

    with pytest.raises(ValueError, match="not running with depth reasoning"):
        policy_think_steps(policy=load_policy(f"nano:{random_nano}"), task="touch", seed=10001, n_chunks=1)
    with pytest.raises(ValueError, match="n_chunks"):
        policy_think_steps(task="touch", n_chunks=0)
