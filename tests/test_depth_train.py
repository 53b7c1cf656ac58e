"""Training loop (tiny, seconds), frame preparation, CLI seed parsing, and the shipped weights."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from molmoact2.commands.depth import parse_seeds  # noqa: E402
from molmoact2.depth.data import depth_to_u8_320  # noqa: E402
from molmoact2.depth.train import TrainConfig, train_vqvae  # noqa: E402
from molmoact2.depth.vqvae import VQVAEConfig  # noqa: E402

ASSET = Path(__file__).resolve().parents[1] / "assets" / "depth_vqvae"


def _frames(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        d = np.full((60, 80), 1.5, np.float32)
        y, x = rng.integers(0, 40), rng.integers(0, 60)
        d[y:y + 20, x:x + 20] = 0.6
        out.append(depth_to_u8_320(d))
    return np.stack(out)


def test_depth_to_u8_320_shape_and_orientation():
    f = _frames(1)[0]
    assert f.shape == (320, 320) and f.dtype == np.uint8
    assert f.max() == 255 and f.min() == 0  # near block -> 255, floor -> 0


def test_train_runs_within_budget_and_validates_input():
    mcfg = VQVAEConfig(hidden_dim=4, codebook_dim=16)
    model, result = train_vqvae(_frames(), mcfg, TrainConfig(max_minutes=0.01, batch_size=2, crop_batch_size=2,
                                                             dead_code_every=1), progress=False)
    assert result.steps >= 1 and result.seconds < 60
    assert np.isfinite(result.final_mse)
    assert 1 <= result.codes_used <= 128
    assert not model.training
    with pytest.raises(ValueError, match="uint8 frames"):
        train_vqvae(np.zeros((3, 64, 64), np.uint8), mcfg, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        train_vqvae(np.zeros((1, 320, 320), np.uint8), mcfg, progress=False)


def test_parse_seeds():
    assert parse_seeds("0-3,7,10-11") == [0, 1, 2, 3, 7, 10, 11]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds("5-2")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds(" , ")


@pytest.mark.skipif(not ASSET.exists(), reason="assets/depth_vqvae not built (molmoact2 depth train)")
def test_shipped_weights_load_and_beat_a_constant_guess():
    import json

    from molmoact2.depth.codec import DepthCodec
    from molmoact2.depth.preprocess import uint8_to_vq_input

    doc = json.loads((ASSET / "config.json").read_text())
    assert "command" in doc["training"] and (ASSET / "model.safetensors").stat().st_size < 25e6
    codec = DepthCodec.load(ASSET)
    frames = _frames(4)
    x = np.stack([uint8_to_vq_input(f) for f in frames])
    codes = codec.encode_inputs(x)
    recon = codec.decode_batch(codes)
    err = np.mean((recon - x) ** 2)
    baseline = np.mean((x - x.mean()) ** 2)  # the best constant map
    assert err < baseline, f"reconstruction MSE {err:.3f} not better than a constant ({baseline:.3f})"
