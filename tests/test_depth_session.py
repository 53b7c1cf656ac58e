"""Codec pipeline, Think sessions (what-if thresholds, stale cells), Steps for the Rerun logger."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from molmoact2.depth import preprocess, session, think  # noqa: E402
from molmoact2.depth.codec import DepthCodec  # noqa: E402
from molmoact2.depth.vqvae import DepthVQVAE, VQVAEConfig  # noqa: E402
from molmoact2.models.base import CameraFrame, Observation, Step  # noqa: E402
from molmoact2.models.recording import Recording  # noqa: E402


def _tiny_codec() -> DepthCodec:
    torch.manual_seed(0)
    return DepthCodec(DepthVQVAE(VQVAEConfig(hidden_dim=4, codebook_dim=8)))


def _frames(n: int = 5) -> list[CameraFrame]:
    """A block sliding right over a textured floor; metric depth with the block 0.3 m nearer."""
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (96, 128, 3)).astype(np.uint8)
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    out = []
    for k in range(n):
        rgb, depth = base.copy(), np.full((96, 128), 1.0, np.float32)
        x = 10 + 20 * k
        rgb[40:60, x:x + 20] = (230, 20, 20)
        depth[40:60, x:x + 20] = 0.7
        out.append(CameraFrame(rgb=rgb, depth_m=depth, K=K, T_world_cam=np.eye(4)))
    return out


def _steps(frames, bins=None) -> list[Step]:
    return [Step(index=i, observation=Observation(cameras={"front": f}, state=np.zeros(2), instruction="x"),
                 depth_bins=None if bins is None else bins[i]) for i, f in enumerate(frames)]


def test_codec_runs_the_real_pipeline():
    codec = _tiny_codec()
    depth = _frames(1)[0].depth_m
    codes = codec.encode(depth_m=depth)
    assert codes.shape == (100,) and codes.dtype == np.int64
    x = torch.from_numpy(preprocess.metric_depth_to_vq_input(depth))[None, None]
    assert np.array_equal(codes, codec.model.encode_indices(x)[0].numpy())
    # disparity input (Depth Anything-style) gives the same codes as metric depth converted by 1/z
    assert np.array_equal(codec.encode(disparity=1.0 / depth), codes)
    assert codec.decode(codes).shape == (320, 320)
    with pytest.raises(ValueError, match="exactly one"):
        codec.encode()
    with pytest.raises(ValueError, match="integer"):
        codec.decode(codes.astype(np.float32))


def test_session_from_recording_thresholds_and_stale_cells(tmp_path):
    frames = _frames()
    Recording.from_steps(tmp_path / "rec", _steps(frames))
    sess = session.from_recording(tmp_path / "rec", _tiny_codec())
    assert len(sess) == 5 and sess.codes_source == "vq-vae (ours)" and sess.codes.shape == (5, 100)
    tr = sess.trace()
    assert tr.masks[0].all()
    direct = [think.update_mask(frames[i].rgb, frames[i - 1].rgb) for i in range(1, 5)]
    assert np.array_equal(tr.masks[1:], np.stack(direct))
    # a threshold above every similarity re-predicts everything -> buffer == fresh codes, nothing stale
    assert (sess.trace(1.01).cells_repredicted == 100).all()
    assert (sess.stale_cells(1.01) == 0).all()
    # a threshold of 0 re-predicts nothing after frame 0 -> the buffer stays at frame 0's codes
    assert (sess.trace(0.0).buffers == sess.codes[0]).all()
    s = sess.summary()
    assert 0 < s["mean_cells_repredicted"] < 100 and s["mean_forward_passes"] < 100


def test_session_with_recorded_model_bins_and_logger_steps(tmp_path):
    frames = _frames(3)
    bins = np.stack([np.full(100, 5), np.full(100, 6), np.full(100, 7)])
    # the model's own depth_bins win over re-encoding the frames' depth, even with a codec at hand
    sess = session.from_steps(_steps(frames, bins), _tiny_codec())
    assert sess.codes_source == "recorded depth_bins" and sess.stale_cells(0.996) is None
    assert np.array_equal(sess.trace().buffers[0], bins[0])
    steps = session.session_steps(sess, codec=_tiny_codec())
    assert [s.depth_update_mask.sum() for s in steps][0] == 100
    assert steps[1].info["tokens_saved"] == 100 - int(steps[1].depth_update_mask.sum())
    assert steps[2].depth_decoded.shape == (320, 320)
    with pytest.raises(FileNotFoundError, match="recording"):
        session.load_steps(tmp_path)
    with pytest.raises(ValueError, match="observation"):
        session.from_steps([Step(index=0)])


def test_rerun_recording_of_a_session(tmp_path):
    pytest.importorskip("rerun")
    from molmoact2.viz.logger import save_rrd

    sess = session.from_steps(_steps(_frames(3)), _tiny_codec())
    path = save_rrd(session.session_steps(sess, _tiny_codec()), tmp_path / "think.rrd")
    assert path.stat().st_size > 1000
