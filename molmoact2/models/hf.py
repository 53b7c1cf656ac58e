"""Real MolmoAct2 checkpoints on this machine, through transformers and the checkpoint's own remote code.

    policy = HFCheckpointPolicy("/data/MolmoAct2-SO100_101", trust_remote_code=True,
                                norm_tag="so100_so101_molmoact2", dtype="bfloat16")
    step = policy.predict(obs)          # Step with actions [H, D] in robot units
    step = policy.ask([image], "Point to the cup.")   # spatial question -> Step with answer + points

Everything that can be checked before a multi-GB load is checked first (`preflight`): files, the
norm-stats file and tag, whether this transformers version runs the official code, whether the
packages its processors import are installed, and whether the weights fit in memory at the chosen
dtype (from the safetensors headers alone; no tensor data is read). Each failure says what to do.

A checkpoint whose config has no `auto_map` but a `model_type` transformers knows natively (e.g.
MolmoAct2-Nano's `molmoact2_nano`, registered by `molmoact2.models.nano`) loads through the same
path without remote code, so it needs no `trust_remote_code`; every other check still applies.

Actions come from the official `model.predict_action(**kwargs)` (keyword-only; molmoact2.md §2).
MolmoThink's `depth_cache` is carried from step to step and dropped by `reset()`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from molmoact2.models.base import Observation, Step

NORM_STATS_FORMAT = "molmoact2_norm_stats.v1"
# The official remote code runs unpatched on 5.4-5.5 (LeRobot pins >=5.4,<5.6); on 5.23 discrete
# mode without CUDA graphs and `generate` hit a renamed cache method (checkpoint-layout.md).
KNOWN_GOOD_TRANSFORMERS = ((5, 4), (5, 5))
# Packages the OFFICIAL processors import at module top; we scan the checkpoint's own code for them.
PACKAGES_IMPORTED_BY_OFFICIAL_CODE = ("torchvision", "einops")
# Activations, KV cache, the CPython/torch runtime: a fixed margin plus 20% of the weights.
MEMORY_OVERHEAD_FRACTION = 0.20
MEMORY_OVERHEAD_BYTES = 512 * 2**20
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_TARGET_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Model types our own packages register with transformers' Auto classes: such a checkpoint (e.g. a
# MolmoAct2-Nano directory) carries no code, so loading it runs none and needs no trust_remote_code.
OUR_NATIVE_MODEL_TYPES = {"molmoact2_nano": "molmoact2.models.nano"}


class CheckpointError(ValueError):
    """A checkpoint cannot be used as asked; the message says why and what to do."""


# ---- reading the directory ------------------------------------------------------------------------
def read_norm_stats(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """Load and validate `norm_stats.json` (format molmoact2_norm_stats.v1)."""
    path = Path(checkpoint_dir) / "norm_stats.json"
    if not path.is_file():
        raise CheckpointError(
            f"no norm_stats.json in {Path(checkpoint_dir)}: MolmoAct2 reads its normalization statistics from "
            f"next to the weights. Download the full checkpoint directory (e.g. `hf download allenai/MolmoAct2-DROID "
            f"--local-dir DIR`), not only the weights, or copy norm_stats.json from the same release."
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from exc
    if doc.get("format") != NORM_STATS_FORMAT or not isinstance(doc.get("metadata_by_tag"), dict):
        raise CheckpointError(
            f"{path}: expected format {NORM_STATS_FORMAT!r} with a 'metadata_by_tag' object, got format "
            f"{doc.get('format')!r} and keys {sorted(doc)}"
        )
    return doc


def resolve_norm_tag(norm_stats: dict[str, Any], norm_tag: str | None, where: str = "norm_stats.json") -> str:
    """Return a valid tag: the one asked for, or the only one there is. Unknown tags list the valid ones."""
    tags = sorted(norm_stats["metadata_by_tag"])
    if norm_tag is None:
        if len(tags) == 1:
            return tags[0]
        raise CheckpointError(
            f"this checkpoint has {len(tags)} norm tags; choose one with norm_tag= (CLI: --norm-tag). Valid tags in "
            f"{where}: {', '.join(tags)}"
        )
    if norm_tag not in norm_stats["metadata_by_tag"]:
        raise CheckpointError(f"unknown norm_tag {norm_tag!r}. Valid tags in {where}: {', '.join(tags)}")
    return norm_tag


def remote_code_files(config: dict[str, Any], checkpoint_dir: Path) -> list[str]:
    """Python files named by `auto_map` in config.json, processor_config.json and tokenizer_config.json."""
    maps = [config.get("auto_map") or {}]
    for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = checkpoint_dir / name
        if path.is_file():
            try:
                doc = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
            maps.append(doc.get("auto_map") or {})
            for sub in doc.values():
                if isinstance(sub, dict) and isinstance(sub.get("auto_map"), dict):
                    maps.append(sub["auto_map"])
    files = set()
    for amap in maps:
        for ref in amap.values():
            for r in ref if isinstance(ref, (list, tuple)) else [ref]:
                if isinstance(r, str) and "." in r:
                    files.add(r.split("--")[-1].rsplit(".", 1)[0] + ".py")
    return sorted(files)


def weight_files(checkpoint_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint (single file or the shards of an index)."""
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        return [checkpoint_dir / s for s in shards]
    single = checkpoint_dir / "model.safetensors"
    return [single] if single.exists() else sorted(checkpoint_dir.glob("*.safetensors"))


def native_model_type(config: dict[str, Any]) -> str | None:
    """`config["model_type"]` when transformers knows it without the directory's code, else None.

    A type counts as native when it is built into transformers or registered by one of our own packages
    (`OUR_NATIVE_MODEL_TYPES`, imported here so the Auto classes know it). Only a config WITHOUT
    `auto_map` is loaded natively: a checkpoint that ships its own code is loaded with that code.
    """
    model_type = config.get("model_type")
    if config.get("auto_map") or not isinstance(model_type, str) or not model_type:
        return None
    package = OUR_NATIVE_MODEL_TYPES.get(model_type)
    if package is not None:
        importlib.import_module(package)  # registers the config/model/processor with the Auto classes
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return model_type if model_type in CONFIG_MAPPING else None


def missing_files(checkpoint_dir: Path, native: bool | None = None) -> list[str]:
    """Names of required files that are absent (config, remote code, weights, tokenizer, processor, stats).

    `native`: whether config.json's model_type loads without remote code (None = find out)."""
    missing = []
    config_path = checkpoint_dir / "config.json"
    if not config_path.is_file():
        return ["config.json"]
    config = json.loads(config_path.read_text())
    if native is None:
        native = native_model_type(config) is not None
    if not config.get("auto_map") and not native:
        missing.append(
            f"config.json 'auto_map' (the checkpoint must ship its remote code, or have a model_type that "
            f"transformers knows; model_type {config.get('model_type')!r} is not registered)"
        )
    for name in remote_code_files(config, checkpoint_dir):
        if not (checkpoint_dir / name).is_file():
            missing.append(name)
    shards = weight_files(checkpoint_dir)
    if not shards:
        missing.append("model.safetensors (or model.safetensors.index.json + shards)")
    missing += [s.name for s in shards if not s.is_file()]
    if not (checkpoint_dir / "tokenizer.json").is_file() and not (checkpoint_dir / "vocab.json").is_file():
        missing.append("tokenizer.json")
    for name in ("tokenizer_config.json", "processor_config.json", "norm_stats.json"):
        if not (checkpoint_dir / name).is_file():
            missing.append(name)
    return missing


# ---- environment ---------------------------------------------------------------------------------
def check_transformers_version(version: str) -> str | None:
    """None when `version` is in the known-good range, else an explanation (a warning, not a refusal)."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:
        return f"cannot parse transformers version {version!r}; the official MolmoAct2 code is verified on 5.4-5.5"
    major_minor = (int(m.group(1)), int(m.group(2)))
    lo, hi = KNOWN_GOOD_TRANSFORMERS
    if lo <= major_minor <= hi:
        return None
    return (
        f"transformers {version} is outside the range the official MolmoAct2 remote code is known to run on "
        f"(5.4-5.5; LeRobot pins >=5.4,<5.6). On 5.23, discrete mode without CUDA graphs and generate() fail with "
        f"an AttributeError. If something breaks, install transformers==5.5.4."
    )


def imports_needed_by_code(checkpoint_dir: Path, files: Sequence[str]) -> dict[str, list[str]]:
    """{package: [files importing it]} for the packages the official processors are known to need."""
    found: dict[str, list[str]] = {}
    for name in files:
        path = checkpoint_dir / name
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for pkg in PACKAGES_IMPORTED_BY_OFFICIAL_CODE:
            if re.search(rf"^\s*(import|from)\s+{pkg}\b", text, flags=re.MULTILINE):
                found.setdefault(pkg, []).append(name)
    return found


def missing_packages(needed: dict[str, list[str]]) -> dict[str, list[str]]:
    return {pkg: files for pkg, files in needed.items() if importlib.util.find_spec(pkg) is None}


# ---- memory --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """Weights declared in the safetensors headers. `bytes_at(dtype)` = size once loaded in that dtype."""

    n_tensors: int
    float_elements: int
    other_bytes: int
    stored_bytes: int
    files: tuple[str, ...]

    def bytes_at(self, dtype: str) -> int:
        return self.float_elements * _TARGET_BYTES[dtype] + self.other_bytes

    def required_bytes(self, dtype: str) -> int:
        weights = self.bytes_at(dtype)
        return int(weights * (1 + MEMORY_OVERHEAD_FRACTION) + MEMORY_OVERHEAD_BYTES)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: 8 bytes of length + the header. Tensor data is never read."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > 100 * 2**20:
            raise CheckpointError(f"{path}: safetensors header claims {n} bytes; not a safetensors file")
        blob = f.read(n)
    if len(blob) != n:
        raise CheckpointError(f"{path}: truncated safetensors header ({len(blob)} of {n} bytes)")
    try:
        return json.loads(blob)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: safetensors header is not JSON ({exc})") from exc


def estimate_memory(checkpoint_dir: str | os.PathLike) -> MemoryEstimate:
    """Sum of tensor sizes from the headers of every weight file (numel x dtype)."""
    files = weight_files(Path(checkpoint_dir))
    if not files:
        raise CheckpointError(f"no *.safetensors weights in {checkpoint_dir}")
    n_tensors = float_elements = other_bytes = stored = 0
    for path in files:
        for name, info in read_safetensors_header(path).items():
            if name == "__metadata__":
                continue
            numel = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
            size = _DTYPE_BYTES.get(info["dtype"])
            if size is None:
                raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {info['dtype']!r}")
            n_tensors += 1
            stored += numel * size
            if info["dtype"] in _FLOAT_DTYPES:
                float_elements += numel
            else:
                other_bytes += numel * size
    return MemoryEstimate(n_tensors, float_elements, other_bytes, stored, tuple(str(f) for f in files))


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (what the kernel can give without swapping)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    raise CheckpointError("cannot read MemAvailable from /proc/meminfo; pass memory_available_bytes= to override")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(estimate: MemoryEstimate, dtype: str, device: str, available: int) -> None:
    """Refuse (CheckpointError with the options) when the weights at `dtype` do not fit in `available` bytes."""
    need = estimate.required_bytes(dtype)
    if need <= available:
        return
    where = "free GPU memory" if device.startswith("cuda") else "available RAM (MemAvailable)"
    options = []
    for alt in ("bfloat16",):
        if alt != dtype and estimate.required_bytes(alt) <= available:
            options.append(f"load in {alt}: dtype='{alt}' (CLI: --dtype {alt}) needs about "
                           f"{_gib(estimate.required_bytes(alt))}")
    if not device.startswith("cuda"):
        options.append("use a machine with a GPU (bf16 inference needs < 16 GB of GPU memory)")
    options.append("run the model on a GPU box with the official /act server and connect to it: "
                   "load_policy('http://HOST:PORT') (CLI: --policy http://HOST:PORT)")
    raise CheckpointError(
        f"refusing to load: the weights are {_gib(estimate.bytes_at(dtype))} in {dtype} (from the safetensors "
        f"headers; about {_gib(need)} with runtime overhead) but only {_gib(available)} of {where} is free on "
        f"{device}. Loading anyway would end in an out-of-memory kill. Options:\n  - " + "\n  - ".join(options)
    )


# ---- the policy ----------------------------------------------------------------------------------
@dataclass
class Preflight:
    """What `preflight` found: the resolved choices and any warnings to show the user."""

    checkpoint_dir: Path
    config: dict[str, Any]
    norm_stats: dict[str, Any]
    norm_tag: str
    code_files: list[str]
    device: str
    dtype: str
    memory: MemoryEstimate
    warnings: list[str] = field(default_factory=list)
    native_model_type: str | None = None  # set when transformers loads the type without the directory's code


def _auto_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return "cpu"


def _free_gpu_bytes(device: str) -> int:
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def preflight(
    checkpoint_dir: str | os.PathLike,
    *,
    norm_tag: str | None = None,
    trust_remote_code: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    memory_available_bytes: int | None = None,
    transformers_version: str | None = None,
) -> Preflight:
    """Every check that can run before loading; raises CheckpointError naming the fix."""
    ckpt = Path(checkpoint_dir).expanduser().resolve()
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint directory {ckpt} does not exist (expected a local MolmoAct2 checkpoint)")
    config_path = ckpt / "config.json"
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{config_path} is not valid JSON ({exc}); re-download the checkpoint") from exc
    native = native_model_type(config)
    missing = missing_files(ckpt, native=native is not None)
    if missing:
        raise CheckpointError(
            f"{ckpt} is not a complete MolmoAct2 checkpoint; missing: {', '.join(missing)}. Download the whole "
            f"repository (`hf download allenai/<model> --local-dir {ckpt}`) on a machine with internet and copy it here."
        )
    norm_stats = read_norm_stats(ckpt)
    tag = resolve_norm_tag(norm_stats, norm_tag, where=str(ckpt / "norm_stats.json"))
    # A natively registered model type (e.g. Nano) with no auto_map anywhere ships no code: nothing to trust.
    code = remote_code_files(config, ckpt)
    if code and not trust_remote_code:
        raise CheckpointError(
            f"loading {ckpt} runs the Python code shipped in that directory ({', '.join(code)}). Read it, and if "
            f"you trust it pass trust_remote_code=True (CLI: --trust-remote-code)."
        )
    notes: list[str] = []
    if int(config.get("n_obs_steps", 1) or 1) != 1:
        notes.append(f"config.json has n_obs_steps={config['n_obs_steps']}; the official predict_action slices its "
                     f"output assuming 1 (single-frame policies) and may fail")
    if code:  # the known-good transformers range is the OFFICIAL remote code's; a native type has no such code
        if transformers_version is None:
            import transformers

            transformers_version = transformers.__version__
        version_note = check_transformers_version(transformers_version)
        if version_note:
            notes.append(version_note)
    absent = missing_packages(imports_needed_by_code(ckpt, code))
    if absent:
        lines = [f"{pkg} (imported by {', '.join(files)})" for pkg, files in sorted(absent.items())]
        raise CheckpointError(
            f"the checkpoint's code in {ckpt} imports packages that are not installed: {'; '.join(lines)}. "
            f"Install them (`pip install {' '.join(sorted(absent))}`; torchvision needs the build matching your "
            f"torch, normally on a GPU machine), or run the model behind an /act server elsewhere."
        )
    device = _auto_device() if device == "auto" else device
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in _TARGET_BYTES:
        raise CheckpointError(f"dtype must be one of {sorted(_TARGET_BYTES)} or 'auto', got {dtype!r}")
    memory = estimate_memory(ckpt)
    if memory_available_bytes is None:
        memory_available_bytes = _free_gpu_bytes(device) if device.startswith("cuda") else mem_available_bytes()
    check_memory(memory, dtype, device, memory_available_bytes)
    return Preflight(ckpt, config, norm_stats, tag, code, device, dtype, memory, notes, native)


def load_action_tokenizer(spec: Any) -> Any:
    """An OpenFAST tokenizer object, or a directory loaded with `molmoact2.openfast`."""
    if spec is None or not isinstance(spec, (str, os.PathLike)):
        return spec
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"action_tokenizer: expected an OpenFAST tokenizer directory, {path} does not exist")
    from molmoact2.openfast import OpenFastProcessor

    # Our loader reads the released format without executing the directory's own Python code.
    return OpenFastProcessor.load(path)


def _short_camera_name(name: str) -> str:
    short = name.rsplit(".", 1)[-1]
    for suffix in ("_cam", "_camera", "_image", "_rgb"):
        if short.endswith(suffix):
            short = short[: -len(suffix)]
    return short


def order_cameras(obs: Observation, camera_keys: Sequence[str] | None, norm_tag: str) -> tuple[list[str], str]:
    """Camera names in the order the checkpoint was trained on, plus a note on how the order was chosen."""
    names = list(obs.cameras)
    if camera_keys is None:
        return names, "observation order (norm stats give no camera_keys)"
    keys = list(camera_keys)
    if len(names) != len(keys):
        raise ValueError(
            f"norm tag {norm_tag!r} expects {len(keys)} cameras in this order: {keys}; the observation has "
            f"{len(names)}: {names}. Pass exactly those cameras (order matters: the first is the main image)."
        )
    by_short = {_short_camera_name(n): n for n in names}
    if set(by_short) == set(keys):
        return [by_short[k] for k in keys], f"matched by name to camera_keys {keys}"
    return names, f"observation order {names} (names do not match camera_keys {keys}; make sure the order does)"


def change_mask(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """MolmoThink's per-cell change mask of the main image (True = re-predicted), molmoact2.md §5."""
    from molmoact2.depth.think import update_mask

    return update_mask(current, previous)


def _to_numpy(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value)


def _field(out: Any, name: str) -> Any:
    if isinstance(out, dict):
        return out.get(name)
    return getattr(out, name, None)


class HFCheckpointPolicy:
    """A local MolmoAct2 checkpoint as a `Policy` (plus `ask` for spatial questions)."""

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike,
        *,
        norm_tag: str | None = None,
        trust_remote_code: bool = False,
        device: str = "auto",
        dtype: str = "auto",
        mode: str = "continuous",
        depth_reasoning: bool = False,
        action_tokenizer: Any = None,
        num_steps: int | None = None,
        n_action_steps: int | None = None,
        seed: int | None = None,
        enable_cuda_graph: bool = True,
        memory_available_bytes: int | None = None,
    ) -> None:
        if mode not in ("continuous", "discrete"):
            raise ValueError(f"mode must be 'continuous' or 'discrete', got {mode!r}")
        if mode == "discrete" and action_tokenizer is None:
            raise CheckpointError(
                "discrete mode needs an OpenFAST tokenizer: pass action_tokenizer=DIR (the MolmoAct2-FAST-Tokenizer "
                "directory; it is not inside the checkpoint) or a loaded tokenizer object"
            )
        self.pre = preflight(
            checkpoint_dir, norm_tag=norm_tag, trust_remote_code=trust_remote_code, device=device, dtype=dtype,
            memory_available_bytes=memory_available_bytes,
        )
        for note in self.pre.warnings:
            warnings.warn(note, stacklevel=2)
        if depth_reasoning and not self.pre.config.get("enable_depth_reasoning", False):
            raise CheckpointError(
                f"{self.pre.checkpoint_dir} was not trained for depth reasoning (config.json enable_depth_reasoning is "
                f"{self.pre.config.get('enable_depth_reasoning')!r}); use a -Think checkpoint (e.g. MolmoAct2-Think-LIBERO) "
                f"or depth_reasoning=False"
            )
        self.checkpoint_dir = self.pre.checkpoint_dir
        self.norm_tag = self.pre.norm_tag
        self.meta = self.pre.norm_stats["metadata_by_tag"][self.norm_tag]
        self.name = f"hf:{self.checkpoint_dir.name}[{self.norm_tag}]"
        self.mode = mode
        self.depth_reasoning = depth_reasoning
        self.action_tokenizer = load_action_tokenizer(action_tokenizer)
        self.num_steps = num_steps
        self.n_action_steps = n_action_steps
        self.seed = seed
        self.enable_cuda_graph = enable_cuda_graph
        self.device, self.dtype = self.pre.device, self.pre.dtype
        self.state_dim = len(self.meta["state_stats"]["min"]) if "min" in self.meta.get("state_stats", {}) else None
        self.camera_keys = self.meta.get("camera_keys")
        self.timings_load_ms: dict[str, float] = {}
        self._load()
        self._index = 0
        self._depth_cache: dict[str, Any] | None = None
        self._generator = None
        self.reset()

    def _load(self) -> None:
        t0 = time.perf_counter()
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        t1 = time.perf_counter()
        path = str(self.checkpoint_dir)
        # Remote code runs only when the directory ships some (preflight demanded the user's opt-in for it);
        # a natively registered type (Nano) is loaded by transformers' own Auto classes.
        trust = bool(self.pre.code_files)
        # extra_special_tokens={}: tokenizer_config.json ships it as a list, which newer transformers rejects
        # (the official servers pass the same override).
        self.processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust, extra_special_tokens={})
        t2 = time.perf_counter()
        torch_dtype = getattr(torch, self.dtype)
        model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=trust, dtype=torch_dtype)
        self.model = model.to(self.device).eval()
        if not callable(getattr(self.model, "predict_action", None)):
            raise CheckpointError(f"{path}: the model class {type(self.model).__name__} has no predict_action(); "
                                  f"is this a MolmoAct2 action checkpoint (Molmo2-ER answers questions only)?")
        t3 = time.perf_counter()
        self.timings_load_ms = {"import_ms": (t1 - t0) * 1e3, "processor_ms": (t2 - t1) * 1e3,
                                "model_ms": (t3 - t2) * 1e3}

    # ---- Policy protocol -----------------------------------------------------------------------
    def reset(self) -> None:
        """New episode: forget the depth cache and restart the seeded noise."""
        self._depth_cache = None
        self._index = 0
        if self.seed is not None:
            import torch

            self._generator = torch.Generator(device=self.device).manual_seed(int(self.seed))
        else:
            self._generator = None

    @property
    def depth_cache(self) -> dict[str, Any] | None:
        return self._depth_cache

    def check_observation(self, obs: Observation) -> list[str]:
        """Camera order for this checkpoint; raises ValueError on a wrong camera count or state dimension."""
        state = np.asarray(obs.state)
        if self.state_dim is not None and state.shape[0] != self.state_dim:
            names = self.meta["state_stats"].get("names")
            raise ValueError(
                f"norm tag {self.norm_tag!r} expects a raw state of {self.state_dim} dims"
                + (f" ({', '.join(map(str, names))})" if names else "")
                + f", got {state.shape[0]}. Pass the robot's RAW state (not normalized), in the training order."
            )
        if not np.all(np.isfinite(state)):
            raise ValueError(f"observation state has non-finite values: {state.tolist()}")
        order, note = order_cameras(obs, self.camera_keys, self.norm_tag)
        self._order_note = note
        return order

    def predict(self, obs: Observation) -> Step:
        import torch
        from PIL import Image

        t0 = time.perf_counter()
        order = self.check_observation(obs)
        images = [Image.fromarray(obs.cameras[name].rgb) for name in order]
        main = obs.cameras[order[0]].rgb
        update_mask = None
        if self.depth_reasoning:
            prev = self._depth_cache
            if prev is None or np.asarray(prev["image"]).shape != main.shape:
                update_mask = np.ones(100, dtype=bool)
            else:
                update_mask = change_mask(np.asarray(prev["image"], np.uint8), main)
        t1 = time.perf_counter()
        kwargs = dict(
            processor=self.processor, images=images, task=obs.instruction,
            state=np.asarray(obs.state, dtype=np.float32), norm_tag=self.norm_tag,
            inference_action_mode=self.mode, enable_depth_reasoning=self.depth_reasoning,
            depth_cache=self._depth_cache if self.depth_reasoning else None,
            action_tokenizer=self.action_tokenizer, num_steps=self.num_steps, n_action_steps=self.n_action_steps,
            generator=self._generator, normalize_language=True, enable_cuda_graph=self.enable_cuda_graph,
            return_dict=True,
        )
        with torch.inference_mode():
            out = self.model.predict_action(**kwargs)
        t2 = time.perf_counter()
        actions = _to_numpy(_field(out, "actions"))
        if actions is None:
            raise RuntimeError("predict_action returned no 'actions'")
        actions = actions.astype(np.float32)
        if actions.ndim == 3 and actions.shape[0] == 1:
            actions = actions[0]
        gen = _to_numpy(_field(out, "generated_token_ids"))
        gen = None if gen is None else gen.reshape(-1).astype(np.int64)
        bins = _to_numpy(_field(out, "depth_bins"))
        bins = None if bins is None else bins.reshape(-1).astype(np.int64)
        if self.depth_reasoning:
            cache = _field(out, "depth_cache")
            if cache is None:
                raise RuntimeError("predict_action with enable_depth_reasoning=True returned no depth_cache")
            self._depth_cache = {"image": _to_numpy(cache["image"]).astype(np.uint8),
                                 "depth_bins": _to_numpy(cache["depth_bins"]).reshape(-1).astype(np.int64)}
        action_ids = self._action_token_ids(gen) if self.mode == "discrete" else None
        text = None
        if gen is not None and gen.size:
            text = self.processor.tokenizer.decode(gen.tolist(), skip_special_tokens=False)
        t3 = time.perf_counter()
        names = self.meta.get("action_stats", {}).get("names")
        step = Step(
            index=self._index,
            timestamp_s=obs.timestamp_s,
            backend="hf",
            observation=obs,
            generated_text=text,
            generated_token_ids=gen,
            depth_bins=bins,
            depth_update_mask=update_mask if bins is not None else None,
            action_token_ids=action_ids,
            actions=actions,
            action_names=tuple(map(str, names)) if names and len(names) == actions.shape[1] else None,
            action_units=f"robot units ({self.meta.get('control_mode', 'unknown control mode')})",
            timings_ms={"prepare_ms": (t1 - t0) * 1e3, "predict_action_ms": (t2 - t1) * 1e3,
                        "postprocess_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t0) * 1e3},
            info={"checkpoint": str(self.checkpoint_dir), "norm_tag": self.norm_tag, "mode": self.mode,
                  "depth_reasoning": self.depth_reasoning, "camera_order": order, "camera_order_note": self._order_note,
                  "device": self.device, "dtype": self.dtype, "remote_code": bool(self.pre.code_files),
                  "native_model_type": self.pre.native_model_type, "depth_cache_used": update_mask is not None
                  and not bool(update_mask.all()), "warnings": list(self.pre.warnings)},
        )
        self._index += 1
        return step

    def _action_token_ids(self, gen: np.ndarray | None) -> np.ndarray | None:
        cfg = self.model.config
        start, end, base = (getattr(cfg, k, None) for k in
                            ("action_start_token_id", "action_end_token_id", "action_token_start_id"))
        if gen is None or None in (start, end, base):
            return None
        where_start, where_end = np.flatnonzero(gen == start), np.flatnonzero(gen == end)
        if not where_start.size or not where_end.size or where_end[-1] < where_start[0]:
            raise RuntimeError(f"discrete output has no <action_start> ... <action_end> span: {gen.tolist()}")
        ids = gen[where_start[0] + 1: where_end[-1]] - base
        n = int(getattr(cfg, "num_action_tokens", 2048) or 2048)
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise RuntimeError(f"discrete output has ids outside the {n} action tokens: {ids.tolist()}")
        return ids.astype(np.int64)

    # ---- spatial questions ---------------------------------------------------------------------
    def ask(self, images: Any, question: str, *, max_new_tokens: int = 256) -> Step:
        """Ask a free-form (e.g. pointing/counting) question; the Step holds the answer and parsed points."""
        import torch
        from PIL import Image

        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("ask: expected at least one image")
        arrays = [np.asarray(im.convert("RGB")) if isinstance(im, Image.Image) else np.asarray(im) for im in images]
        for i, a in enumerate(arrays):
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise ValueError(f"ask: image {i} must be uint8 [H, W, 3], got {a.dtype} {list(a.shape)}")
        t0 = time.perf_counter()
        content = [{"type": "image", "image": Image.fromarray(a)} for a in arrays]
        content.append({"type": "text", "text": question})
        messages = [{"role": "user", "content": content}]
        inputs = self.processor.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in dict(inputs).items()}
        prompt_ids = inputs["input_ids"]
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens)
        t2 = time.perf_counter()
        new_ids = out[0, prompt_ids.shape[1]:].detach().cpu().numpy().astype(np.int64)
        answer = self.processor.tokenizer.decode(new_ids.tolist(), skip_special_tokens=True).strip()
        points_px, parsed_info = parse_spatial(answer, [(a.shape[1], a.shape[0]) for a in arrays])
        t3 = time.perf_counter()
        return Step(
            backend="hf",
            prompt_text=question,
            prompt_token_ids=prompt_ids[0].detach().cpu().numpy().astype(np.int64),
            generated_token_ids=new_ids,
            generated_text=answer,
            answer_text=answer,
            points_px=points_px,
            timings_ms={"prepare_ms": (t1 - t0) * 1e3, "generate_ms": (t2 - t1) * 1e3,
                        "parse_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t0) * 1e3},
            info={"checkpoint": str(self.checkpoint_dir), "question": question, "spatial": parsed_info},
        )


def parse_spatial(answer: str, sizes_wh: list[tuple[int, int]]) -> tuple[dict[str, np.ndarray] | None, dict[str, Any]]:
    """Parse an answer with `molmoact2.spatial.parse_answer`; points per image ("image_1", ...) in pixels."""
    from molmoact2 import spatial  # formats layer; imported lazily (not needed for actions)

    parsed = spatial.parse_answer(answer, num_images=len(sizes_wh))
    points: dict[str, np.ndarray] = {}
    for i, (w, h) in enumerate(sizes_wh, start=1):
        px = parsed.points_px(width=w, height=h, image=i)
        if len(px):
            points[f"image_{i}"] = px
    info = {"ok": parsed.ok, "problems": list(parsed.problems), "count": parsed.count,
            "n_points": len(parsed.points), "n_boxes": len(parsed.boxes), "text": parsed.text}
    return points or None, info
