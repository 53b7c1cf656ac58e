"""Depth VQ-VAE: released layout (53 keys), `vae-final.pt` container, our safetensors round trip."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from molmoact2.depth import vqvae  # noqa: E402

# compat.md Part 1 §1.3, written out independently of the model code: key -> shape.
_RES = {"net.0.weight": [256, 256, 3, 3], "net.0.bias": [256], "net.2.weight": [256, 256, 3, 3],
        "net.2.bias": [256], "net.4.weight": [256, 256, 1, 1], "net.4.bias": [256]}
RELEASED_SHAPES: dict[str, list[int]] = {
    "encoder.0.weight": [16, 1, 4, 4], "encoder.0.bias": [16],
    "encoder.2.weight": [32, 16, 4, 4], "encoder.2.bias": [32],
    "encoder.4.weight": [64, 32, 4, 4], "encoder.4.bias": [64],
    "encoder.6.weight": [128, 64, 4, 4], "encoder.6.bias": [128],
    "encoder.8.weight": [256, 128, 4, 4], "encoder.8.bias": [256],
    **{f"encoder.10.{k}": v for k, v in _RES.items()},
    **{f"encoder.11.{k}": v for k, v in _RES.items()},
    "encoder.12.weight": [512, 256, 1, 1], "encoder.12.bias": [512],
    "decoder.0.weight": [256, 512, 1, 1], "decoder.0.bias": [256],
    **{f"decoder.2.{k}": v for k, v in _RES.items()},
    **{f"decoder.3.{k}": v for k, v in _RES.items()},
    "decoder.4.weight": [256, 256, 4, 4], "decoder.4.bias": [256],
    "decoder.6.weight": [256, 128, 4, 4], "decoder.6.bias": [128],
    "decoder.8.weight": [128, 64, 4, 4], "decoder.8.bias": [64],
    "decoder.10.weight": [64, 32, 4, 4], "decoder.10.bias": [32],
    "decoder.12.weight": [32, 16, 4, 4], "decoder.12.bias": [16],
    "decoder.14.weight": [1, 16, 1, 1], "decoder.14.bias": [1],
    "_vq_vae._embedding": [128, 512], "_vq_vae._ema_cluster_size": [128], "_vq_vae._ema_w": [128, 512],
}


def _released_state(seed: int = 0, prefix: str = "module.") -> dict:
    g = torch.Generator().manual_seed(seed)
    return {prefix + k: torch.randn(*shape, generator=g) * 0.05 for k, shape in RELEASED_SHAPES.items()}


def test_released_layout_keys_order_shapes_and_counts():
    model = vqvae.DepthVQVAE()
    state = model.state_dict()
    assert len(RELEASED_SHAPES) == 53
    assert list(state) == list(RELEASED_SHAPES)  # same names, same order (encoder, decoder, _vq_vae)
    assert {k: list(v.shape) for k, v in state.items()} == RELEASED_SHAPES
    assert vqvae.count_parameters(model) == 7_689_201
    assert sum(v.numel() for k, v in state.items() if k.startswith("_vq_vae")) == 131_200
    # The codebook is a buffer, not a parameter (strict loading needs it as a state-dict entry).
    assert "_vq_vae._embedding" not in dict(model.named_parameters())


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_load_released_container_with_and_without_prefix(tmp_path, prefix):
    state = _released_state(prefix=prefix)
    path = tmp_path / "vae-final.pt"
    torch.save({"weights": state}, path)
    model = vqvae.load_released_vae(path)
    assert model.config.is_released_layout
    got = model.state_dict()
    for k, v in state.items():
        assert torch.equal(got[k[len(prefix):]], v.float())
    # Decoding with a known codebook row must use exactly that row (lookup == one-hot matmul).
    codes = torch.arange(100) % 128
    out = model.decode_indices(codes[None])
    assert out.shape == (1, 1, 320, 320)
    z = model._vq_vae.lookup(codes.reshape(1, 10, 10))
    assert torch.allclose(z[0, :, 0, 1], state[prefix + "_vq_vae._embedding"][1])


def test_released_loader_rejects_wrong_layout(tmp_path):
    state = _released_state()
    del state["module._vq_vae._ema_w"]
    torch.save({"weights": state}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="missing=.*_ema_w"):
        vqvae.load_released_vae(tmp_path / "bad.pt")
    state = _released_state()
    state["module.decoder.14.weight"] = torch.zeros(2, 16, 1, 1)
    torch.save({"weights": state}, tmp_path / "bad2.pt")
    with pytest.raises(ValueError, match="wrong_shape"):
        vqvae.load_released_vae(tmp_path / "bad2.pt")
    torch.save([1, 2], tmp_path / "bad3.pt")
    with pytest.raises(ValueError, match="weights"):
        vqvae.load_released_vae(tmp_path / "bad3.pt")


def test_encode_is_nearest_code_with_lowest_index_on_ties():
    q = vqvae.VectorQuantizerEMA(4, 2, 0.99, 0.25, 1e-5)
    q._embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 5.0]]))
    z = torch.tensor([[0.9, 0.1], [0.1, 4.0], [-1.0, 0.0]]).t().reshape(1, 2, 1, 3)
    assert q.indices(z).tolist() == [[[1, 3, 0]]]


def test_smaller_variant_roundtrip_safetensors_fp16_and_released_format(tmp_path):
    cfg = vqvae.VQVAEConfig(hidden_dim=4, codebook_dim=16)
    model = vqvae.DepthVQVAE(cfg).eval()
    assert not cfg.is_released_layout
    x = torch.rand(2, 1, 320, 320) * 2 - 1
    codes = model.encode_indices(x)
    assert codes.shape == (2, 100) and codes.dtype == torch.int64 and 0 <= int(codes.min()) <= int(codes.max()) < 128
    vqvae.save_vqvae(model, tmp_path / "ours")
    loaded = vqvae.load_vqvae(tmp_path / "ours")
    assert loaded.config == cfg
    half = {k: v.half().float() for k, v in model.state_dict().items()}
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, half[k])
    # Our weights also go out as a released-style file that the released loader reads back.
    vqvae.save_released_format(model, tmp_path / "vae-final.pt")
    again = vqvae.load_released_vae(tmp_path / "vae-final.pt")
    assert again.config.hidden_dim == 4 and again.config.codebook_dim == 16
    assert torch.equal(again.encode_indices(x), codes)


def test_decode_rejects_bad_codes():
    model = vqvae.DepthVQVAE(vqvae.VQVAEConfig(hidden_dim=4, codebook_dim=8))
    with pytest.raises(ValueError, match="0..127"):
        model.decode_indices(torch.full((1, 100), 128))
    with pytest.raises(ValueError, match="integer codes"):
        model.decode_indices(torch.zeros(1, 99, dtype=torch.long))
    with pytest.raises(ValueError, match="expected input"):
        model.encode_indices(torch.zeros(1, 1, 64, 64))


def test_training_step_updates_codebook_by_ema():
    torch.manual_seed(0)
    model = vqvae.DepthVQVAE(vqvae.VQVAEConfig(hidden_dim=4, codebook_dim=8)).train()
    before = model._vq_vae._embedding.clone()
    recon, vq_loss, idx = model(torch.rand(2, 1, 320, 320) * 2 - 1)
    assert recon.shape == (2, 1, 320, 320) and idx.shape == (2, 10, 10)
    assert float(model._vq_vae._ema_cluster_size.sum()) > 0
    assert not torch.equal(before, model._vq_vae._embedding)
    (recon.mean() + vq_loss).backward()
    assert model.encoder[0].weight.grad is not None  # straight-through gradient reaches the encoder
