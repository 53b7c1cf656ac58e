"""The depth VQ-VAE that turns a 320x320 depth map into 10x10 codes from a 128-entry codebook, and back.

The module tree is laid out so that `state_dict()` has EXACTLY the 53 keys (names, order, shapes) of
MolmoAct's released `vae-final.pt` (compat.md Part 1 §1.3): `encoder.{0,2,4,6,8,10,11,12}`,
`decoder.{0,2,3,4,6,8,10,12,14}`, `_vq_vae._embedding/_ema_cluster_size/_ema_w`. ReLUs sit at the odd
indices of the two `nn.Sequential`s, so the numbering only works if every layer keeps its slot.
A user holding the real file can therefore decode real MolmoAct/MolmoAct2 depth tokens with
`load_released_vae(path)`; our own (smaller or full) weights load with `load_vqvae(dir)`.

torch is imported at module import; import this module lazily (`molmoact2.depth` does).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_FORMAT = "molmoact2_workbench_depth_vqvae.v1"


@dataclass(frozen=True)
class VQVAEConfig:
    """Hyper-parameters; the defaults are the released MolmoAct depth VAE (compat.md §1.2)."""

    image_size: int = 320
    # x32 downsampling gives the 10x10 grid = the 100 depth tokens of the prompt.
    downsample_ratio: int = 32
    num_resnet_blocks: int = 2
    # 128 codes = the `<depth_0>`..`<depth_127>` vocabulary rows.
    num_tokens: int = 128
    codebook_dim: int = 512
    # Width of the first conv; channels double per stride-2 layer up to hidden_dim*16 (256 released).
    hidden_dim: int = 16
    channels: int = 1
    ema_decay: float = 0.99
    commitment_cost: float = 0.25
    ema_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        n = math.log2(self.downsample_ratio)
        if n != int(n) or n < 1:
            raise ValueError(f"VQVAEConfig.downsample_ratio: expected a power of two >= 2, got {self.downsample_ratio}")
        if self.image_size % self.downsample_ratio:
            raise ValueError(
                f"VQVAEConfig.image_size: expected a multiple of downsample_ratio={self.downsample_ratio}, got {self.image_size}"
            )

    @property
    def grid_side(self) -> int:
        return self.image_size // self.downsample_ratio

    @property
    def num_codes(self) -> int:
        """Codes per image (100 for the released layout)."""
        return self.grid_side**2

    @property
    def is_released_layout(self) -> bool:
        # Only the shape-defining fields matter; EMA settings do not change the state dict.
        shape_fields = ("image_size", "downsample_ratio", "num_resnet_blocks", "num_tokens", "codebook_dim", "hidden_dim", "channels")
        return all(getattr(self, f) == getattr(RELEASED_CONFIG, f) for f in shape_fields)


RELEASED_CONFIG = VQVAEConfig()


class ResBlockV1(nn.Module):
    """Residual block "v1": conv3-ReLU-conv3-ReLU-conv1 added to the input; no norm, no activation after the sum."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class VectorQuantizerEMA(nn.Module):
    """Nearest-code quantizer whose codebook is a BUFFER updated by exponential moving averages.

    Buffer names (`_embedding`, `_ema_cluster_size`, `_ema_w`) are the released ones: strict
    loading of `vae-final.pt` needs all three even though inference only reads `_embedding`.
    """

    def __init__(self, num_tokens: int, dim: int, decay: float, commitment_cost: float, epsilon: float) -> None:
        super().__init__()
        self.num_tokens, self.dim = num_tokens, dim
        self.decay, self.commitment_cost, self.epsilon = decay, commitment_cost, epsilon
        embedding = torch.randn(num_tokens, dim)
        self.register_buffer("_embedding", embedding)
        self.register_buffer("_ema_cluster_size", torch.zeros(num_tokens))
        self.register_buffer("_ema_w", embedding.clone())

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D, H, W] -> int64 [B, H, W]; ties go to the lowest index (torch.argmin)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        emb = self._embedding
        dist = flat.pow(2).sum(1, keepdim=True) + emb.pow(2).sum(1) - 2.0 * flat @ emb.t()
        return dist.argmin(dim=1).reshape(b, h, w)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """int [B, H, W] -> [B, D, H, W] (row lookup == the released one-hot matmul)."""
        return self._embedding[idx].permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (quantized with straight-through gradient, commitment loss, indices)."""
        idx = self.indices(z)
        q = self.lookup(idx)
        if self.training:
            self._ema_update(z.detach(), idx)
            q = self.lookup(idx)
        loss = self.commitment_cost * F.mse_loss(z, q.detach())
        q = z + (q - z).detach()
        return q, loss, idx

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        onehot = F.one_hot(idx.reshape(-1), self.num_tokens).to(flat.dtype)
        self._ema_cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        n = self._ema_cluster_size.sum()
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        size = (self._ema_cluster_size + self.epsilon) / (n + self.num_tokens * self.epsilon) * n
        self._ema_w.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        self._embedding.copy_(self._ema_w / size.unsqueeze(1))


class DepthVQVAE(nn.Module):
    """Encoder (5 stride-2 convs, 2 res blocks, 1x1 to codebook_dim) -> EMA VQ -> mirrored decoder.

    Input/output: [B, 1, 320, 320] float in [-1, 1] (+1 = nearest). Registration order encoder,
    decoder, _vq_vae is the released key order.
    """

    def __init__(self, config: VQVAEConfig = RELEASED_CONFIG) -> None:
        super().__init__()
        self.config = c = config
        n_down = int(math.log2(c.downsample_ratio))  # 5 stride-2 layers for x32
        enc: list[nn.Module] = [nn.Conv2d(c.channels, c.hidden_dim, 4, stride=2, padding=1), nn.ReLU()]
        ch = c.hidden_dim
        for _ in range(n_down - 1):
            enc += [nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1), nn.ReLU()]
            ch *= 2
        enc += [ResBlockV1(ch) for _ in range(c.num_resnet_blocks)]
        enc += [nn.Conv2d(ch, c.codebook_dim, 1)]
        self.encoder = nn.Sequential(*enc)

        top = c.hidden_dim * c.downsample_ratio // 2  # 256 for the released layout (== encoder top width)
        dec: list[nn.Module] = [nn.Conv2d(c.codebook_dim, top, 1), nn.ReLU()]
        dec += [ResBlockV1(top) for _ in range(c.num_resnet_blocks)]
        dec += [nn.ConvTranspose2d(top, top, 4, stride=2, padding=1), nn.ReLU()]
        ch = top
        for _ in range(n_down - 1):
            dec += [nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1), nn.ReLU()]
            ch //= 2
        dec += [nn.Conv2d(ch, c.channels, 1)]
        self.decoder = nn.Sequential(*dec)

        self._vq_vae = VectorQuantizerEMA(c.num_tokens, c.codebook_dim, c.ema_decay, c.commitment_cost, c.ema_epsilon)

    # ---- the two directions ------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        s, ch = self.config.image_size, self.config.channels
        if x.ndim != 4 or tuple(x.shape[1:]) != (ch, s, s):
            raise ValueError(f"DepthVQVAE: expected input [B, {ch}, {s}, {s}] in [-1, 1], got {list(x.shape)}")

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, 320, 320] in [-1, 1] -> int64 [B, 100] codes, row-major (cell = row*10 + col)."""
        self._check_input(x)
        return self._vq_vae.indices(self.encoder(x)).reshape(x.shape[0], -1)

    @torch.no_grad()
    def decode_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """int [B, 100] (or [B, 10, 10]) codes -> raw decoder output [B, 1, 320, 320] (~[-1, 1])."""
        g, n = self.config.grid_side, self.config.num_tokens
        codes = torch.as_tensor(codes)
        if codes.ndim == 1:
            codes = codes.unsqueeze(0)
        if codes.dtype.is_floating_point or codes.numel() % (g * g) or codes.shape[-1] not in (g, g * g):
            raise ValueError(f"DepthVQVAE.decode_indices: expected integer codes [B, {g * g}] or [B, {g}, {g}], got {codes.dtype} {list(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= n):
            raise ValueError(f"DepthVQVAE.decode_indices: expected codes in 0..{n - 1}, got {int(codes.min())}..{int(codes.max())}")
        idx = codes.reshape(-1, g, g).long().to(self._vq_vae._embedding.device)
        return self.decoder(self._vq_vae.lookup(idx).to(next(self.decoder.parameters()).dtype))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction [B,1,S,S], commitment loss, indices [B,g,g])."""
        self._check_input(x)
        q, vq_loss, idx = self._vq_vae(self.encoder(x))
        return self.decoder(q), vq_loss, idx


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- released `vae-final.pt` -----------------------------------------------------------------
def strip_module_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """DistributedDataParallel saves keys as `module.xxx`; every public loader strips it (compat §1.1)."""
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def infer_config(state: dict[str, Any]) -> VQVAEConfig:
    """Read hidden_dim / codebook size from tensor shapes, so narrower checkpoints load too."""
    for key in ("encoder.0.weight", "_vq_vae._embedding"):
        if key not in state:
            raise KeyError(f"depth VQ-VAE state dict: expected key {key!r} (released layout), got keys {sorted(state)[:6]}...")
    hidden, channels = state["encoder.0.weight"].shape[:2]
    num_tokens, dim = state["_vq_vae._embedding"].shape
    n_res = len({k.split(".")[1] for k in state if k.startswith("encoder.") and ".net." in k})
    return VQVAEConfig(hidden_dim=int(hidden), channels=int(channels), num_tokens=int(num_tokens), codebook_dim=int(dim), num_resnet_blocks=n_res)


def model_from_state_dict(state: dict[str, Any], config: VQVAEConfig | None = None) -> DepthVQVAE:
    state = strip_module_prefix(state)
    model = DepthVQVAE(config or infer_config(state))
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [f"{k}: expected {list(want[k].shape)}, got {list(state[k].shape)}" for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            "depth VQ-VAE state dict does not match the released layout "
            f"(expected {len(want)} entries): missing={missing[:5]} unexpected={unexpected[:5]} wrong_shape={wrong[:5]}"
        )
    model.load_state_dict({k: torch.as_tensor(v).float() for k, v in state.items()}, strict=True)
    return model.float().eval()


def load_released_vae(path: str | os.PathLike) -> DepthVQVAE:
    """Load MolmoAct's `vae-final.pt` (`{"weights": state_dict}`, keys maybe `module.`-prefixed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_released_vae: expected the file vae-final.pt at {path}, not found")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "weights" in obj:
        state = obj["weights"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj  # a bare state dict, as `reconstruct_from_tokens.py` also accepts
    else:
        raise ValueError(f"load_released_vae: expected {{'weights': state_dict}} in {path}, got {type(obj).__name__} with keys {list(obj)[:5] if isinstance(obj, dict) else '-'}")
    return model_from_state_dict(state)


def save_released_format(model: DepthVQVAE, path: str | os.PathLike, module_prefix: bool = True) -> Path:
    """Write our weights as a `vae-final.pt`-style file (fp32, `{"weights": ...}`), loadable by MolmoAct's code."""
    prefix = "module." if module_prefix else ""
    state = {prefix + k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weights": state}, path)
    return path


# ---- our format: safetensors + config.json ---------------------------------------------------
def save_vqvae(model: DepthVQVAE, directory: str | os.PathLike, dtype: torch.dtype = torch.float16, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": CONFIG_FORMAT})
    doc = {"format": CONFIG_FORMAT, "config": asdict(model.config), "dtype": str(dtype).replace("torch.", "")}
    doc.update(extra or {})
    (directory / CONFIG_NAME).write_text(json.dumps(doc, indent=1))
    return directory


def load_vqvae(directory: str | os.PathLike) -> DepthVQVAE:
    """Load `config.json` + `model.safetensors` (written by `save_vqvae`); computes in float32."""
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"load_vqvae: expected {p} (written by `molmoact2 depth train`), not found")
    doc = json.loads(cfg_path.read_text())
    if doc.get("format") != CONFIG_FORMAT:
        raise ValueError(f"load_vqvae: expected format {CONFIG_FORMAT!r} in {cfg_path}, got {doc.get('format')!r}")
    known = {f.name for f in fields(VQVAEConfig)}
    config = VQVAEConfig(**{k: v for k, v in doc["config"].items() if k in known})
    return model_from_state_dict(load_file(str(w_path)), config)


def load_any(path: str | os.PathLike) -> DepthVQVAE:
    """A directory (ours) or a `.pt` file (released)."""
    path = Path(path)
    return load_vqvae(path) if path.is_dir() else load_released_vae(path)


def codes_to_numpy(codes: torch.Tensor) -> np.ndarray:
    return codes.detach().cpu().numpy().astype(np.int64)
