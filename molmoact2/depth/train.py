"""Train the depth VQ-VAE on simulator depth frames, within a wall-clock budget, on CPU.

Recipe (MolmoAct trained "following Aurora-perception": Adam, lr 1e-3, MSE, EMA codebook). What we
add for a 25-minute CPU budget, and why:
  * the codebook starts from encoder outputs of the first batch (random normal codes far from the
    encoder's range would stay unused for hundreds of steps),
  * dead codes (EMA usage ~0) restart at random encoder outputs, so all 128 tokens get used,
  * the first part of the budget trains on random 160x160 crops (4x cheaper per sample; the
    network is convolutional, so a 32x32 cell looks the same in a crop), the rest on full 320x320
    frames so the 10x10 grid and its borders are what the weights finally see.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from molmoact2.depth.preprocess import uint8_to_vq_input
from molmoact2.depth.vqvae import DepthVQVAE, VQVAEConfig


@dataclass(frozen=True)
class TrainConfig:
    max_minutes: float = 22.0  # wall-clock budget for the optimisation loop (frames are made before)
    max_steps: int = 100_000
    batch_size: int = 8
    crop_batch_size: int = 16
    crop_size: int = 160
    crop_fraction: float = 0.6  # share of the time budget spent on crops
    lr: float = 1e-3  # MolmoAct README
    lr_final_factor: float = 0.1  # cosine decay to lr * this at the end of the budget
    dead_code_every: int = 20
    dead_code_usage: float = 0.03  # EMA cluster size below this = dead
    flip_p: float = 0.5  # horizontal flips: depth statistics are left-right symmetric
    threads: int = 2
    seed: int = 0


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_mse: float
    codes_used: int
    history: list[dict]


def _batch(frames_u8: np.ndarray, n: int, crop: int | None, rng: np.random.Generator, flip_p: float) -> torch.Tensor:
    idx = rng.integers(0, len(frames_u8), n)
    out = []
    for i in idx:
        f = frames_u8[i]
        if crop:
            y, x = rng.integers(0, f.shape[0] - crop + 1), rng.integers(0, f.shape[1] - crop + 1)
            f = f[y:y + crop, x:x + crop]
        if rng.random() < flip_p:
            f = f[:, ::-1]
        out.append(uint8_to_vq_input(np.ascontiguousarray(f)))
    return torch.from_numpy(np.stack(out)).unsqueeze(1)


@torch.no_grad()
def _restart_codes(model: DepthVQVAE, z: torch.Tensor, which: torch.Tensor, rng: np.random.Generator) -> int:
    vq = model._vq_vae
    flat = z.permute(0, 2, 3, 1).reshape(-1, vq.dim)
    dead = torch.nonzero(which).flatten()
    if len(dead) == 0:
        return 0
    pick = torch.from_numpy(rng.integers(0, len(flat), len(dead)))
    vq._embedding[dead] = flat[pick]
    vq._ema_w[dead] = flat[pick]
    vq._ema_cluster_size[dead] = 1.0
    return int(len(dead))


def _forward_unchecked(model: DepthVQVAE, x: torch.Tensor):
    # Crops are smaller than image_size: bypass the 320x320 input check of forward().
    z = model.encoder(x)
    q, vq_loss, idx = model._vq_vae(z)
    return model.decoder(q), vq_loss, idx, z


def train_vqvae(frames_u8: np.ndarray, model_config: VQVAEConfig = VQVAEConfig(), config: TrainConfig = TrainConfig(),
                progress: bool = True) -> tuple[DepthVQVAE, TrainResult]:
    """frames_u8: uint8 [N, 320, 320] preprocessed depth maps (before the [-1, 1] mapping)."""
    from tqdm.auto import tqdm

    frames_u8 = np.asarray(frames_u8)
    s = model_config.image_size
    if frames_u8.ndim != 3 or frames_u8.shape[1:] != (s, s) or frames_u8.dtype != np.uint8:
        raise ValueError(f"train_vqvae: expected uint8 frames [N, {s}, {s}], got {frames_u8.dtype} {list(frames_u8.shape)}")
    if len(frames_u8) < 2:
        raise ValueError(f"train_vqvae: expected at least 2 frames, got {len(frames_u8)}")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = DepthVQVAE(model_config).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    budget_s = config.max_minutes * 60.0

    # Codebook from real encoder outputs of a first full-size batch.
    with torch.no_grad():
        z0 = model.encoder(_batch(frames_u8, config.batch_size, None, rng, 0.0))
        _restart_codes(model, z0, torch.ones(model_config.num_tokens, dtype=torch.bool), rng)

    history: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=int(budget_s), unit="s", desc="depth VQ-VAE", disable=not progress,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s {postfix}")
    step, mse_ema, restarted = 0, None, 0
    while step < config.max_steps:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget_s:
            break
        frac = elapsed / budget_s
        for g in opt.param_groups:  # cosine decay over the wall-clock budget
            g["lr"] = config.lr * (config.lr_final_factor + (1 - config.lr_final_factor) * 0.5 * (1 + np.cos(np.pi * frac)))
        crop = config.crop_size if frac < config.crop_fraction and config.crop_size < s else None
        x = _batch(frames_u8, config.crop_batch_size if crop else config.batch_size, crop, rng, config.flip_p)
        recon, vq_loss, idx, z = _forward_unchecked(model, x)
        mse = F.mse_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        (mse + vq_loss).backward()
        opt.step()
        step += 1
        m = float(mse.detach())
        mse_ema = m if mse_ema is None else 0.95 * mse_ema + 0.05 * m
        if step % config.dead_code_every == 0:
            restarted += _restart_codes(model, z.detach(), model._vq_vae._ema_cluster_size < config.dead_code_usage, rng)
        used = int((model._vq_vae._ema_cluster_size > config.dead_code_usage).sum())
        if step % 10 == 0 or step == 1:
            history.append({"step": step, "seconds": round(elapsed, 1), "mse": round(mse_ema, 5), "codes_used": used,
                            "crop": crop or s, "lr": opt.param_groups[0]["lr"]})
        bar.n = min(int(time.perf_counter() - t0), int(budget_s))
        bar.set_postfix_str(f"step {step} mse {mse_ema:.4f} codes {used}/{model_config.num_tokens} {'crop' if crop else 'full'}")
        bar.refresh()
    bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    return model, TrainResult(step, seconds, float(mse_ema or float("nan")), used if step else 0, history)


def train_metadata(model_config: VQVAEConfig, config: TrainConfig, result: TrainResult, extra: dict) -> dict:
    return {"training": {**asdict(config), "steps": result.steps, "seconds": round(result.seconds, 1),
                         "final_mse": result.final_mse, "codes_used": result.codes_used, **extra}}
