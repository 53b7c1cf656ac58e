"""The resumable Nano training loop behind `molmoact2 train nano`.

Output directory layout (`--out DIR`):
    DIR/config.json, model.safetensors (fp16), norm_stats.json, tokenizer files, processor_config.json,
        generation_config.json        the real checkpoint layout; `load_nano(path=DIR)` loads it. Rewritten
                                      at every checkpoint, so an interrupted run still leaves a usable model.
    DIR/train_state/                  fp32 weights + AdamW state + step + RNG state + config (resume only;
                                      do NOT ship it: `rsync -a --exclude train_state DIR/ assets/nano/`)
    DIR/train_log.jsonl               one line per step: losses (overall and per style), lr, seconds
    DIR/training_args.json            the configuration and the exact command line

Determinism: the batch of step k is drawn from `numpy.random.default_rng([seed, k])` and the flow noise
/ depth-code noise from a torch Generator seeded with (seed, k), so a run resumed at step k continues
exactly as the uninterrupted run would (same data, same noise, same optimizer state). Writes are
atomic (a temporary directory renamed into place), so a kill during a save never corrupts the state.

Recommended real run (2 shared CPU cores, ~2 h; figures from the timed run in the issue-6 report):
    molmoact2 train data --out /tmp/nano_data --episodes-per-task 40
    molmoact2 train nano --data /tmp/nano_data --out /tmp/nano_small --size small --steps 2000 \\
        --batch-size 16 --lr 1e-3 --seed 0
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from molmoact2.training.nano_examples import STYLE_ORDER, StyleMix

STATE_DIR = "train_state"
MAX_CHECKPOINT_MB = 25.0
DEFAULT_ACTION_TOKENIZER = Path(__file__).resolve().parents[2] / "assets" / "openfast_so101_sim"


@dataclass(frozen=True)
class TrainConfig:
    size: str = "small"
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    seed: int = 0
    save_every: int = 100  # steps between checkpoints (train_state + the fp16 export, ~1 s; ~5 min of work)
    threads: int = 2  # the real run is the only job on the machine: both cores
    depth_noise_p: float = 0.1  # molmoact2.md §5: 10% of teacher-forced depth inputs are random codes
    num_noise_samples: int = 4  # flow-matching noise draws per LM pass (post-training value, §6)
    flow_weight: float = 1.0
    mix: StyleMix = field(default_factory=StyleMix)
    action_tokenizer: str = str(DEFAULT_ACTION_TOKENIZER)
    # A new run (fresh optimizer and schedule, its own mix) starting from a trained checkpoint's weights: how to
    # change what a trained model practises (e.g. only spatial answers) without pretending it is a resume.
    init_from: str = ""
    # Question kinds to train on (empty = all): practise one skill, e.g. ("point",) for naming -> location.
    qa_kinds: tuple[str, ...] = ()
    # ViT patches pooled per LM image token, rows x cols (empty = the size's / the --init-from checkpoint's own).
    pooling: tuple[int, ...] = ()
    # Keep the image path (ViT + adapter) as it is, e.g. after `molmoact2 train vision` taught its tokens what is
    # where: the language model then learns to read them without its early, noisy gradients rewriting them.
    freeze_vision: bool = False
    # Train only the action expert (its blocks and the shared context K/V projection); the ViT, adapter and language
    # model stay as loaded. Why: to teach the expert to read what a language model already does (e.g. a pointing run
    # that tells the named object apart) without the mixed batches unlearning it. Every batch then needs a flow
    # target: the mix must be action / depth_action only.
    expert_only: bool = False
    # Start the 256 state-bin token rows as ordinal embeddings (models/nano/state_embedding.py: neighbouring bins
    # similar) instead of the loaded / random rows; a new run only, never on --resume.
    ordinal_state: bool = False
    # Gaussian noise added to every robot example's state before it is binned, as a fraction of each joint's 1-99%
    # range (0 = off). Why: a model that reads the state exactly can predict the next actions from where the arm
    # already is and learn less from the pictures (the "copycat" shortcut); a blurred state keeps it honest.
    state_noise: float = 0.0
    # Probability that a plain action example's front image is blanked (mid-grey; 0 = off). Why: a grey wrist
    # camera in the closed loop changed nothing (where to go comes from the front view, ~3 px per object at 96 px;
    # scripts/probe_camera_reliance.py), while the wrist view shows the named object large between the jaws for
    # the last centimetres.
    # Measured worse (docs/nano_experiments.md#camera-reliance): the words are followed less; an option only.
    front_dropout: float = 0.0
    # Question pictures moved by up to this share of the side (uniform whole pixels in x and y, 0 = off), the
    # answer's points and the grounding mask with them (training/shift_augment.py). Why: five shifted copies at
    # inference lift pointing well above one pass; training on shifted pictures may teach one pass the same.
    shift_augment: float = 0.0
    # Grounding loss (models/nano/grounding.py): weight (0 = off), and which layer's head is told where the named
    # object is while the point's coordinates are written.
    ground_weight: float = 0.0
    ground_layer: int = 3
    ground_head: int = 0
    # The same head, in action examples, at the positions the action expert reads after the instruction: told where
    # the instruction's object is in the front image (demo caches' `target_px48`). Needs ground_weight > 0.
    ground_actions: bool = False
    # > 0: ground only each demo's first N frames (the arm is still near home, so neither its pose in the picture nor
    # the state tokens tell which object it is heading for: only the words do), and draw half of the action
    # examples from those frames so the signal is not rare. 0: every frame.
    ground_actions_first: int = 0
    # Reach loss (models/nano/reach.py): weight (0 = off) and the language-model layer (negative: from the end) whose
    # value at the prompt's last position is told where the instruction's object is in the front image.
    reach_weight: float = 0.0
    reach_layer: int = -1
    # Expert grounding (models/nano/grounding.py, `expert_grounding_loss`): weight (0 = off) and which head of which
    # action-expert block is told, in action examples, to look at the instruction's object in the front image.
    # Why: scripts/probe_expert_attention.py found expert heads that find the bin but none that find the named object.
    expert_ground_weight: float = 0.0
    expert_ground_block: int = 3
    expert_ground_head: int = 1
    # Expert offset loss (models/nano/offset.py): weight (0 = off) of the MSE that tells each step of the expert's
    # plan the object-minus-jaw vector there (demo caches' `target_offset_m`). Why: probe_grasp.py found the grasp
    # closes on schedule but 3-4 cm off the object. Trains only the expert, so it runs with expert_only.
    offset_weight: float = 0.0
    # Share of robot examples drawn from arrival chunks (NanoTrainData.use_arrival: the chunk that brings the jaw
    # within arrival_cm of the named object; 0 = off, frames uniform). Why: probe_grasp.py found the grasp closes a
    # few centimetres short, and those chunks are ~1 in 10 demo frames (at 2 cm only pick_place has them).
    # Measured no better than its control (docs/nano_experiments.md#arrival): an option only.
    arrival_share: float = 0.0
    arrival_cm: float = 2.0

    def lr_at(self, step: int) -> float:
        """Learning rate for (0-based) step `step`."""
        return warmup_cosine_lr(step, self.lr, self.warmup_steps, self.steps, self.min_lr_ratio)


def warmup_cosine_lr(step: int, lr: float, warmup_steps: int, steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to min_lr_ratio * lr at `steps` (0-based step)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _torch_generator(seed: int, step: int):
    import torch

    return torch.Generator().manual_seed(int(np.random.default_rng([seed, step, 1]).integers(2**62)))


def _atomic_dir(final: Path, write) -> None:
    """Write into a temporary sibling directory, then swap it into place."""
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_train_state(out: Path, model, processor, optimizer, step: int, cfg: TrainConfig) -> None:
    import torch

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp / "model")  # fp32, with norm_stats.json
        processor.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"torch_rng": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "config": _config_dict(cfg)}, indent=1))

    _atomic_dir(out / STATE_DIR, write)


def export_checkpoint(out: Path, model, processor) -> float:
    """The real checkpoint layout at the root of `out`, fp16. Returns model.safetensors' size in MiB."""
    from molmoact2.models.nano.factory import save_checkpoint

    tmp = out / f".export.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, processor, tmp, dtype="float16")  # converts a copy: training continues in fp32
    for f in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):  # config last: it marks a checkpoint
        os.replace(f, out / f.name)
    tmp.rmdir()
    size_mib = (out / "model.safetensors").stat().st_size / 2**20
    if size_mib > MAX_CHECKPOINT_MB:
        raise RuntimeError(f"export: model.safetensors is {size_mib:.1f} MiB, expected < {MAX_CHECKPOINT_MB} MiB "
                           f"(assets must stay small); use a smaller --size")
    return size_mib


def _init_weights_dir(path: str | os.PathLike) -> Path:
    """The fp32 weights of a training output directory when present (train_state/model), else the checkpoint."""
    path = Path(path)
    if (path / STATE_DIR / "model" / "config.json").is_file():
        return path / STATE_DIR / "model"
    if (path / "config.json").is_file():
        return path
    raise FileNotFoundError(f"--init-from: {path} is not a Nano checkpoint directory (no config.json)")


def load_weights(path: str | os.PathLike):
    """(model, processor) in fp32 from a checkpoint or a training directory (its fp32 weights when it has them)."""
    import torch

    from molmoact2.models.nano.modeling_nano import NanoForConditionalGeneration
    from molmoact2.models.nano.processing_nano import NanoProcessor

    src = _init_weights_dir(path)
    model = NanoForConditionalGeneration.from_pretrained(str(src)).to(torch.float32)
    # .to() casts the weights, not the configs' dtype fields: an fp16 checkpoint's sub-configs would still say
    # float16, and every export of this model would carry that (the weights are fp32 from here on).
    from transformers import PretrainedConfig

    for sub in vars(model.config).values():
        if isinstance(sub, PretrainedConfig):
            sub.dtype = torch.float32
    return model, NanoProcessor.from_pretrained(src)


def load_init_weights(path: str | os.PathLike, size: str):
    """(model, processor) in fp32 from a trained checkpoint, checked against the requested --size."""
    from molmoact2.models.nano.factory import SIZES

    model, processor = load_weights(path)
    text = model.config.text_config
    want = SIZES[size]["text"]
    got = {k: getattr(text, k) for k in ("hidden_size", "num_hidden_layers")}
    if got != {k: want[k] for k in got}:
        raise ValueError(f"--init-from: {path} has a text model of {got}, not size {size!r} "
                         f"({ {k: want[k] for k in got} }); pass the matching --size")
    return model, processor


def init_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """Where the starting weights came from: path, its step and its own training arguments."""
    path = Path(path)
    src = _init_weights_dir(path)
    state = path / STATE_DIR / "state.json"
    args = path / "training_args.json"
    return {"path": str(path), "weights": str(src),
            "step": json.loads(state.read_text())["step"] if src.parent.name == STATE_DIR and state.is_file() else None,
            "training_args": json.loads(args.read_text()) if args.is_file() else None}


# Actions executed per query: an inference setting, not a normalization. The caches write the stride their depth
# buffers were carried over (15); the shipped Nano executes 30. A fine-tune keeps its parent's.
_INFERENCE_ONLY_FIELDS = ("n_action_steps",)


def _normalization(norm_stats: dict[str, Any]) -> dict[str, Any]:
    """The norm stats without inference-only fields: what must agree for actions to be normalized alike."""
    return norm_stats | {"metadata_by_tag": {
        tag: {k: v for k, v in meta.items() if k not in _INFERENCE_ONLY_FIELDS}
        for tag, meta in norm_stats["metadata_by_tag"].items()}}


def _with_action_steps_of(data_stats: dict[str, Any], model_stats: dict[str, Any]) -> dict[str, Any]:
    """The data's norm stats with the (initial or resumed) model's inference-only fields where it has the tag."""
    tags = {}
    for tag, meta in data_stats["metadata_by_tag"].items():
        parent = model_stats.get("metadata_by_tag", {}).get(tag, {})
        tags[tag] = meta | {k: parent[k] for k in _INFERENCE_ONLY_FIELDS if k in parent}
    return data_stats | {"metadata_by_tag": tags}


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)


def _config_from(d: dict[str, Any]) -> TrainConfig:
    d = dict(d)
    d["mix"] = StyleMix(**d.get("mix", {}))
    d["qa_kinds"] = tuple(d.get("qa_kinds", ()))  # JSON gives a list; runs saved before the field have none
    d["pooling"] = tuple(d.get("pooling", ()))
    return TrainConfig(**d)


def style_losses(styles: list[str], losses: dict[str, Any]) -> dict[str, float]:
    """Per-style means for display: token CE (per generated token) and flow MSE."""
    out: dict[str, float] = {}
    sums, counts, flows = (np.asarray(losses[k], dtype=np.float64) for k in ("lm_row_sum", "lm_row_count", "flow_row"))
    styles_arr = np.asarray(styles)
    for s in STYLE_ORDER:
        sel = styles_arr == s
        if sel.any() and counts[sel].sum() > 0:
            out[f"{s}_ce"] = float(sums[sel].sum() / counts[sel].sum())
        fl = flows[sel][np.isfinite(flows[sel])]
        if fl.size:
            out[f"{s}_flow"] = float(fl.mean())
    return out


_SHORT = {"action_ce": "act", "action_flow": "actF", "depth_ce": "dep", "depth_action_ce": "d+a",
          "depth_action_flow": "d+aF", "qa_ce": "qa", "ground_loss": "gnd", "reach_loss": "reach",
          "expert_ground_loss": "xgnd", "offset_loss": "off"}


def train(data_dir: str | os.PathLike | list[str | os.PathLike], out: str | os.PathLike, cfg: TrainConfig, *,
          resume: bool = False, progress: bool = True, argv: list[str] | None = None) -> dict[str, Any]:
    """Train (or resume) Nano; returns a summary (steps run, seconds per step, final losses, size)."""
    import torch

    from molmoact2.models.nano.modeling_nano import NanoForConditionalGeneration
    from molmoact2.models.nano.processing_nano import NanoProcessor
    from molmoact2.models.nano.train_step import collate, train_step
    from molmoact2.training.nano_examples import NanoTrainData

    out = Path(out)
    state_dir = out / STATE_DIR
    torch.set_num_threads(int(cfg.threads))
    if progress:  # one bar (ours); transformers' per-save "Writing model shards" bars would interleave with it
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    start = 0
    old_state = state_dir.with_name(state_dir.name + ".old")
    if resume and not state_dir.exists() and (old_state / "state.json").is_file():
        old_state.rename(state_dir)  # killed between the two renames of _atomic_dir: the previous state is whole
    if resume and (state_dir / "state.json").is_file():
        saved = json.loads((state_dir / "state.json").read_text())
        old = _config_from(saved["config"])
        # Everything but the length of the run and the save cadence must match, or "resume" is a different run.
        fixed = {k: v for k, v in _config_dict(old).items() if k not in ("steps", "save_every", "threads")}
        now = {k: v for k, v in _config_dict(cfg).items() if k not in ("steps", "save_every", "threads")}
        diff = {k: (fixed[k], now[k]) for k in fixed if fixed[k] != now[k]}
        if diff:
            raise ValueError(f"--resume: the options differ from the saved run in {state_dir} (saved, now): {diff}")
        start = int(saved["step"])
        model = NanoForConditionalGeneration.from_pretrained(str(state_dir / "model"))
        processor = NanoProcessor.from_pretrained(state_dir / "model")
        torch.set_rng_state(torch.load(state_dir / "rng.pt", weights_only=True)["torch_rng"])
    elif resume:
        raise FileNotFoundError(f"--resume: no saved state in {state_dir} (start without --resume)")
    else:
        if (out / "config.json").exists() or state_dir.exists():
            raise FileExistsError(f"{out} already holds a checkpoint; pass --resume to continue it or choose a new --out")
        model = processor = None
        if cfg.init_from:
            model, processor = load_init_weights(cfg.init_from, cfg.size)
    data = NanoTrainData.load(data_dir, action_tokenizer=cfg.action_tokenizer or None, progress=progress)
    if cfg.qa_kinds:
        data.keep_questions(cfg.qa_kinds)
    if cfg.ground_actions and cfg.ground_weight <= 0:
        raise ValueError("ground_actions (--ground-actions) needs a grounding weight: pass --ground-weight W > 0")
    data.grounding = cfg.ground_weight > 0
    if cfg.ground_actions_first and not (cfg.ground_actions or cfg.expert_ground_weight > 0):
        raise ValueError("ground_actions_first (--ground-actions-first) needs --ground-actions or "
                         "--expert-ground-weight W > 0")
    if cfg.expert_ground_weight < 0:
        raise ValueError(f"expert_ground_weight (--expert-ground-weight): expected >= 0 (0 = off), "
                         f"got {cfg.expert_ground_weight}")
    # Action examples carry the object's cells for the LM head (--ground-actions) or the expert's head.
    data.ground_actions = cfg.ground_actions or cfg.expert_ground_weight > 0
    if not 0.0 <= cfg.state_noise <= 1.0:
        raise ValueError(f"state_noise (--state-noise): expected 0..1 of a joint's range, got {cfg.state_noise}")
    data.state_noise = cfg.state_noise
    if not 0.0 <= cfg.front_dropout <= 1.0:
        raise ValueError(f"front_dropout (--front-dropout): expected a probability 0..1, got {cfg.front_dropout}")
    if cfg.front_dropout > 0 and cfg.mix.action <= 0:
        raise ValueError("front_dropout (--front-dropout) blanks plain action examples, and --mix has action=0: "
                         "give the action style a share")
    data.front_dropout = cfg.front_dropout
    if not 0.0 <= cfg.shift_augment <= 0.25:
        raise ValueError(f"shift_augment (--shift-augment): expected a share of the picture's side 0..0.25, "
                         f"got {cfg.shift_augment}")
    if cfg.shift_augment > 0 and cfg.mix.qa <= 0:
        raise ValueError("shift_augment (--shift-augment) moves question pictures, and --mix has qa=0: "
                         "give the qa style a share")
    data.shift_frac = cfg.shift_augment
    data.ground_first = cfg.ground_actions_first
    if cfg.expert_only:
        if cfg.mix.depth > 0 or cfg.mix.qa > 0:
            raise ValueError(f"expert_only (--expert-only): only the action expert trains, so every batch needs a flow "
                             f"target: pass --mix with depth=0 and qa=0 (got depth={cfg.mix.depth}, qa={cfg.mix.qa})")
        if cfg.ground_weight > 0 or cfg.reach_weight > 0:
            raise ValueError("expert_only (--expert-only): --ground-weight and --reach-weight train the language model, "
                             "which --expert-only keeps as loaded; use --expert-ground-weight for the expert's head")
    if cfg.reach_weight < 0:
        raise ValueError(f"reach_weight (--reach-weight): expected >= 0 (0 = off), got {cfg.reach_weight}")
    if cfg.reach_weight > 0:
        data.use_reach()
    if cfg.offset_weight < 0:
        raise ValueError(f"offset_weight (--offset-weight): expected >= 0 (0 = off), got {cfg.offset_weight}")
    if cfg.offset_weight > 0:
        if cfg.mix.action + cfg.mix.depth_action <= 0:
            raise ValueError("offset_weight (--offset-weight) trains on continuous action chunks, and --mix has "
                             "action=0 and depth_action=0: give one of them a share")
        data.use_offset()
    if not 0.0 <= cfg.arrival_share <= 1.0:
        raise ValueError(f"arrival_share (--arrival-share): expected a share 0..1, got {cfg.arrival_share}")
    if cfg.arrival_cm <= 0:
        raise ValueError(f"arrival_cm (--arrival-cm): expected a distance > 0 cm, got {cfg.arrival_cm}")
    if cfg.arrival_share > 0:
        if cfg.mix.action + cfg.mix.depth_action <= 0:
            raise ValueError("arrival_share (--arrival-share) picks the frames of robot examples, and --mix has "
                             "action=0 and depth_action=0: give one of them a share")
        arrival_frames = data.use_arrival(cfg.arrival_share, cfg.arrival_cm)
        print(f"arrival chunks (jaw comes within {cfg.arrival_cm:g} cm), drawn for {cfg.arrival_share:.0%} of robot "
              f"examples: " + ", ".join(f"{t} {n}" for t, n in sorted(arrival_frames.items())), file=sys.stderr)
    if data.norm_stats is None:
        raise ValueError(f"{data_dir}: question scenes only; list a demo cache from `molmoact2 train data` first "
                         f"(its norm stats are the checkpoint's)")
    if model is None:
        from molmoact2.models.nano.factory import build_random_nano

        model, processor = build_random_nano(cfg.size, seed=cfg.seed, norm_stats=data.norm_stats)
    if cfg.pooling and not start:
        from molmoact2.models.nano.factory import set_pooling

        set_pooling(model, processor, cfg.pooling)
    elif _normalization(model.norm_stats) != _normalization(data.norm_stats):
        which = "--resume: the saved run's" if start else f"--init-from: {cfg.init_from}'s"
        raise ValueError(f"{which} norm stats differ from those of {data_dir}: the actions would be normalized "
                         f"differently; use the data the checkpoint was trained on")
    model.norm_stats = _with_action_steps_of(data.norm_stats, model.norm_stats)
    if cfg.ordinal_state and not start:
        from molmoact2.models.nano.state_embedding import set_ordinal_state_embeddings

        set_ordinal_state_embeddings(model, seed=cfg.seed)
    if cfg.freeze_vision:
        for part in (model.vit, model.adapter):
            part.requires_grad_(False)
    if cfg.expert_only:
        for name, param in model.named_parameters():
            if not name.startswith("action_expert."):
                param.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim >= 2]
    no_decay = [p for n, p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    if start:
        optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
    out.mkdir(parents=True, exist_ok=True)
    if not start:
        args = {"config": _config_dict(cfg), "argv": argv,
                "data": str(data_dir) if isinstance(data_dir, (str, os.PathLike)) else [str(d) for d in data_dir],
                "data_scenes": len(data.scene_images), "data_questions": len(data.qa),
                "data_frames": data.meta["frames"], "data_episodes": len(data.episodes),
                "fast_failures": data.fast_failures}
        if cfg.arrival_share > 0:
            args["arrival_frames"] = arrival_frames
        if cfg.init_from:
            args["init_from"] = init_provenance(cfg.init_from)
        (out / "training_args.json").write_text(json.dumps(args, indent=1))
    elif (out / "training_args.json").is_file():
        # A resume may change the run's length (and so its cosine schedule) or its threads: keep the history,
        # so the shipped checkpoint's provenance is the whole sequence of commands, not only the first.
        args = json.loads((out / "training_args.json").read_text())
        args.setdefault("resumes", []).append({"from_step": start, "steps": cfg.steps, "threads": cfg.threads,
                                               "argv": argv})
        (out / "training_args.json").write_text(json.dumps(args, indent=1))
    if start >= cfg.steps:
        raise ValueError(f"--resume: the saved run is already at step {start}; ask for --steps > {start}")

    from tqdm.auto import tqdm

    log = open(out / "train_log.jsonl", "a")
    ema: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=start, desc=f"nano {cfg.size}", unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    t_run = time.perf_counter()
    last: dict[str, Any] = {}
    try:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            lr = cfg.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rng = np.random.default_rng([cfg.seed, step])
            examples, styles = data.sample_batch(model, processor, rng, cfg.batch_size, cfg.mix)
            batch = collate(examples, processor)
            losses = train_step(model, batch, optimizer, generator=_torch_generator(cfg.seed, step),
                                depth_noise_p=cfg.depth_noise_p, num_noise_samples=cfg.num_noise_samples,
                                flow_weight=cfg.flow_weight, row_losses=True, ground_weight=cfg.ground_weight,
                                ground_layer=cfg.ground_layer, ground_head=cfg.ground_head,
                                reach_weight=cfg.reach_weight, reach_layer=cfg.reach_layer,
                                expert_ground_weight=cfg.expert_ground_weight,
                                expert_ground_block=cfg.expert_ground_block, expert_ground_head=cfg.expert_ground_head,
                                offset_weight=cfg.offset_weight)
            per_style = style_losses(styles, losses)
            for extra in ("ground_loss", "reach_loss", "expert_ground_loss", "offset_loss"):
                if extra in losses:
                    per_style[extra] = losses[extra]
            record = {"step": step + 1, "lr": lr, "loss": losses["loss"], "lm_loss": losses["lm_loss"],
                      "flow_loss": losses.get("flow_loss"), **per_style, "styles": {s: styles.count(s) for s in STYLE_ORDER},
                      "seconds": round(time.perf_counter() - t0, 3)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            for k, v in per_style.items() | {("loss", losses["loss"])}:
                ema[k] = v if k not in ema else 0.9 * ema[k] + 0.1 * v
            bar.set_postfix_str(" ".join(f"{_SHORT.get(k, k)}={ema[k]:.3f}" for k in ["loss", *sorted(_SHORT)]
                                         if k in ema), refresh=False)
            bar.update(1)
            last = record
            done = step + 1
            if done % cfg.save_every == 0 or done == cfg.steps:
                save_train_state(out, model, processor, optimizer, done, cfg)
                export_checkpoint(out, model, processor)
    finally:
        bar.close()
        log.close()
    seconds = time.perf_counter() - t_run
    size = (out / "model.safetensors").stat().st_size / 2**20
    return {"steps_run": cfg.steps - start, "seconds": seconds, "seconds_per_step": seconds / max(1, cfg.steps - start),
            "final": last, "model_mib": size, "fast_failures": data.fast_failures}
