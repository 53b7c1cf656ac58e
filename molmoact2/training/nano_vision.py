"""Teach Nano's image tokens what is where before the language model learns to point (`molmoact2 train vision`).

    molmoact2 train vision --init-from /tmp/nano_point --data /tmp/nano_scenes --heldout /tmp/nano_heldout \\
        --out /tmp/nano_vision --epochs 6

Why: the real model starts from a pretrained SigLIP2 encoder; Nano's ViT starts from random weights and learns
only through the language model's answer tokens. Pointing at the movable objects stayed at the level of one
fixed point that never looks at the image (docs/nano_experiments.md "Finer image tokens"), so the answer tokens
alone did not teach the ViT where the objects are. Here a throwaway readout head on the LM-input image tokens (one per `<im_patch>`)
is trained on the scenes' segmentation: for every token cell, which named objects cover it (soft class
fractions, "background" for the rest) and where the object covering most of the cell is in the whole image (so a
token also says where it is, which the LM needs to write coordinates; `--per-class-positions`: each class's own). The ViT and adapter learn with it; the LM and the
action expert are untouched. `--frozen` trains the head alone: a probe of what the tokens already hold.

Graded on held-out images the way pointing is graded: for each pointing question, the cell most likely to hold
the named object, and the head's position for it there, must land on the object's mask.

Writes a checkpoint directory like `train nano` (fp16 export at the root, fp32 weights in `train_state/model`,
so `train nano --init-from OUT` starts from the fp32 ones) plus `vision_pretrain.json` (config, classes, losses
per epoch, held-out grades) and `vision_head.safetensors` (the readout head, not part of the model).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKGROUND = "background"
VISION_RECORD = "vision_pretrain.json"
VISION_FORMAT = "molmoact2_nano_vision_pretrain.v1"


@dataclass(frozen=True)
class VisionPretrainConfig:
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    seed: int = 0
    threads: int = 2
    frozen: bool = False  # True: only the head learns (a probe of what the image tokens already hold)
    # Position error is in image fractions (~0.05 for an object): weighted so it matters next to the class loss.
    position_weight: float = 20.0
    # True: each class's centroid in each cell (the head must know the name to read a position); False: one
    # position per cell, of its main object, so the tokens say "here" the same way for every name.
    per_class_positions: bool = False


# ---- targets ------------------------------------------------------------------------------------
def scene_labels(qa: list[dict[str, Any]]) -> dict[tuple[int, str], dict[int, str]]:
    """{(cache, segmentation key): {segmentation label: object name}} from the point and box questions, which
    name every visible object of their image."""
    from molmoact2 import spatial

    out: dict[tuple[int, str], dict[int, str]] = {}
    for item in qa:
        if item["kind"] not in ("point", "box") or len(item.get("labels", [])) != 1:
            continue
        name = spatial.parse_answer(item["answer"]).text.strip()  # the tag's label: "red cube"
        if name:
            out.setdefault((item.get("cache", 0), item["seg_key"]), {})[int(item["labels"][0])] = name
    return out


def cell_targets(seg: np.ndarray, names: dict[int, str], classes: tuple[str, ...],
                 grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token cell (row-major, like the `<im_patch>` tokens): class fractions [cells, C] (summing to 1),
    each class's pixel centroid in image fractions (x, y) [cells, C, 2], and whether the class is there
    [cells, C] (bool). Objects whose name is not in `classes` count as background."""
    rows, cols = grid
    h, w = seg.shape
    index = {n: i for i, n in enumerate(classes)}
    cls = np.zeros(seg.shape, np.int64)  # background = 0
    for label, name in names.items():
        if name in index:
            cls[seg == label] = index[name]
    yy, xx = np.mgrid[0:h, 0:w]
    frac = np.zeros((rows * cols, len(classes)), np.float32)
    pos = np.zeros((rows * cols, len(classes), 2), np.float32)
    for r in range(rows):
        r0, r1 = r * h // rows, (r + 1) * h // rows
        for c in range(cols):
            c0, c1 = c * w // cols, (c + 1) * w // cols
            k = r * cols + c
            block = cls[r0:r1, c0:c1].ravel()
            counts = np.bincount(block, minlength=len(classes))
            frac[k] = counts / block.size
            for j in np.nonzero(counts)[0]:
                sel = block == j
                # pixel centres, as the pointing grader reads a point (x, y in [0, 1] of the image)
                pos[k, j, 0] = (xx[r0:r1, c0:c1].ravel()[sel].mean() + 0.5) / w
                pos[k, j, 1] = (yy[r0:r1, c0:c1].ravel()[sel].mean() + 0.5) / h
    return frac, pos, frac > 0


class VisionSet:
    """Every distinct image of the caches' point/box questions with its cell targets (all in memory)."""

    def __init__(self, data: Any, classes: tuple[str, ...] | None, grid: tuple[int, int],
                 image_size: tuple[int, int], progress: bool = False) -> None:
        from tqdm.auto import tqdm

        from molmoact2.models.nano.processing_nano import preprocess_image

        labels = scene_labels(data.qa)
        if not labels:
            raise ValueError(f"{data.roots}: no point or box questions with one label each: nothing says which "
                             f"object is where (expected caches from `molmoact2 train data` or `train scenes`)")
        if classes is None:
            classes = (BACKGROUND, *sorted({n for m in labels.values() for n in m.values()}))
        self.classes, self.grid = classes, grid
        first = {}
        for item in data.qa:  # one question per image finds its pixels and segmentation
            key = (item.get("cache", 0), item.get("seg_key"))
            if key in labels and key not in first:
                first[key] = item
        self.keys = list(labels)
        pixels, frac, pos, has, segs = [], [], [], [], []
        for key in tqdm(self.keys, desc="vision targets", unit="image", file=sys.stderr, disable=not progress):
            item = first[key]
            seg = data.qa_segmentation(item)
            f, p, m = cell_targets(seg, labels[key], classes, grid)
            pixels.append(preprocess_image(data.qa_image(item), image_size))
            frac.append(f), pos.append(p), has.append(m), segs.append(seg)
        self.pixels = np.stack(pixels)
        self.frac, self.pos, self.has = np.stack(frac), np.stack(pos), np.stack(has)
        self.segs = segs
        at = {k: i for i, k in enumerate(self.keys)}
        # (image index, question) for every pointing question: what grade_predictions asks
        self.questions = [(at[key], q) for q in data.qa
                          if q["kind"] == "point" and (key := (q.get("cache", 0), q.get("seg_key"))) in at]

    def __len__(self) -> int:
        return len(self.keys)


# ---- model pieces -------------------------------------------------------------------------------
def make_head(width: int, num_classes: int, per_class: bool):
    from torch import nn

    # class logits, then (x, y): one per class, or one shared by the cell's main object
    return nn.Linear(width, num_classes + 2 * (num_classes if per_class else 1))


def head_outputs(head, tokens, num_classes: int):
    """tokens [N, cells, d] -> (class log-probs [N, cells, C], positions [N, cells, C or 1, 2] in [0, 1])."""
    import torch

    out = head(tokens)
    c = num_classes
    return torch.log_softmax(out[..., :c], dim=-1), torch.sigmoid(out[..., c:].unflatten(-1, (-1, 2)))


def position_targets(frac: np.ndarray, pos: np.ndarray, has: np.ndarray, per_class: bool,
                     classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(targets [..., C or 1, 2], where they count [..., C or 1]). Shared: the centroid of the named object
    covering most of the cell, so one readout serves every name (what the language model must learn to read);
    a movable object wins over a fixture (the bin is large: any of its pixels is a right answer, a small
    object's are few). Background never has a position worth learning."""
    from molmoact2.evaluation.report import FIXTURES

    if per_class:
        mask = has.copy()
        mask[..., 0] = False
        return pos, mask
    weight = np.array([1e-3 if n in FIXTURES else 1.0 for n in classes[1:]], np.float32)
    main = (frac[..., 1:] * weight).argmax(-1) + 1
    target = np.take_along_axis(pos, main[..., None, None].repeat(2, -1), axis=-2)
    return target, frac[..., 1:].sum(-1, keepdims=True) > 0


def vision_loss(logp, pos, frac, pos_target, pos_mask, position_weight: float):
    """Soft cross-entropy over classes per cell + squared position error where a position counts."""
    ce = -(frac * logp).sum(-1).mean()
    err = ((pos - pos_target) ** 2).sum(-1)
    pos_loss = (err * pos_mask).sum() / pos_mask.sum().clamp(min=1)
    return ce + position_weight * pos_loss, ce, pos_loss


def head_predictions(model, head, vs: VisionSet, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities [N, cells, C], positions [N, cells, C or 1, 2]) for every image of `vs`."""
    import torch

    probs, poss = [], []
    with torch.no_grad():
        for s in range(0, len(vs), batch):
            tokens = model.encode_images(torch.from_numpy(vs.pixels[s:s + batch]))
            logp, pos = head_outputs(head, tokens, len(vs.classes))
            probs.append(logp.exp().numpy()), poss.append(pos.numpy())
    return np.concatenate(probs), np.concatenate(poss)


def grade_predictions(vs: VisionSet, prob: np.ndarray, pos: np.ndarray) -> dict[str, Any]:
    """Pointing from per-cell predictions: for each point question, the cell with the highest probability of
    the named class and the position predicted for it there (per class, or the cell's one); correct when it lands on the object's mask.
    Movable objects and fixtures (the bin) apart, as `eval qa` reports them."""
    from molmoact2.evaluation.offline import lands_on
    from molmoact2.evaluation.report import FIXTURES, _rate, pointed_name

    index = {n: i for i, n in enumerate(vs.classes)}
    hits: dict[str, list[bool]] = {"objects": [], "fixtures": []}
    for i, q in vs.questions:
        name = pointed_name(q)
        if name not in index:
            continue
        c = index[name]
        k = int(prob[i, :, c].argmax())
        seg = vs.segs[i]
        x, y = pos[i, k, c if pos.shape[2] > 1 else 0]
        ok = lands_on(seg, q["labels"], float(x) * seg.shape[1], float(y) * seg.shape[0])
        hits["fixtures" if name in FIXTURES else "objects"].append(ok)
    return {k: _rate(sum(v), len(v)) for k, v in hits.items() if v}


# ---- training -----------------------------------------------------------------------------------
def pretrain_vision(init_from: str | os.PathLike, data_dirs: list[str | os.PathLike],
                    heldout_dirs: list[str | os.PathLike], out: str | os.PathLike, cfg: VisionPretrainConfig, *,
                    progress: bool = True, argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from molmoact2.training.nano_data import partial_dir
    from molmoact2.training.nano_examples import NanoTrainData
    from molmoact2.training.nano_trainer import STATE_DIR, export_checkpoint, load_weights

    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"epochs and batch size: expected >= 1, got {cfg.epochs} and {cfg.batch_size}")
    out = Path(out)
    tmp = partial_dir(out, False, "train vision")  # refuses a non-empty OUT before any work
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, processor = load_weights(init_from)
    grid, size = tuple(processor.image_grid), tuple(processor.image_size)
    train_set = VisionSet(NanoTrainData.load(data_dirs, progress=False), None, grid, size, progress)
    held = VisionSet(NanoTrainData.load(heldout_dirs, progress=False), train_set.classes, grid, size, progress) \
        if heldout_dirs else None
    num_classes = len(train_set.classes)
    head = make_head(model.config.text_config.hidden_size, num_classes, cfg.per_class_positions)
    pos_target, pos_mask = position_targets(train_set.frac, train_set.pos, train_set.has, cfg.per_class_positions,
                                            train_set.classes)
    model.requires_grad_(False)
    learners = [head] if cfg.frozen else [head, model.vit, model.adapter]
    for part in learners:
        part.requires_grad_(True)
    params = [p for part in learners for p in part.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = -(-len(train_set) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    t0 = time.perf_counter()

    def grade() -> dict[str, Any]:
        model.eval()
        g = {"training": grade_predictions(train_set, *head_predictions(model, head, train_set))}
        if held is not None:
            g["heldout"] = grade_predictions(held, *head_predictions(model, head, held))
        model.train()
        return g

    history: list[dict[str, Any]] = []
    bar = tqdm(total=total, desc="vision" + (" probe" if cfg.frozen else ""), unit="step", file=sys.stderr,
               disable=not progress)
    step = 0
    try:
        for epoch in range(cfg.epochs):
            order = rng.permutation(len(train_set))
            sums = np.zeros(3)
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * \
                    (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / total)))
                for g in optimizer.param_groups:
                    g["lr"] = lr
                tokens = model.encode_images(torch.from_numpy(train_set.pixels[idx]))
                logp, pos = head_outputs(head, tokens, num_classes)
                loss, ce, pos_loss = vision_loss(logp, pos, torch.from_numpy(train_set.frac[idx]),
                                                 torch.from_numpy(pos_target[idx]), torch.from_numpy(pos_mask[idx]),
                                                 cfg.position_weight)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"vision pretraining: loss is {loss.item()} at step {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                sums += (loss.item(), ce.item(), pos_loss.item())
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", ce=f"{ce.item():.3f}", pos=f"{pos_loss.item():.4f}")
            n = -(-len(order) // cfg.batch_size)
            history.append({"epoch": epoch + 1, "loss": sums[0] / n, "ce": sums[1] / n, "position": sums[2] / n,
                            "seconds": round(time.perf_counter() - t0, 1)})
    finally:
        bar.close()
    grades = grade()
    (tmp / STATE_DIR).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp / STATE_DIR / "model")  # fp32: what `train nano --init-from` reads
    processor.save_pretrained(tmp / STATE_DIR / "model")
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp / "vision_head.safetensors"))
    record = {"format": VISION_FORMAT, "config": asdict(cfg), "init_from": str(init_from),
              "data": [str(d) for d in data_dirs], "heldout": [str(d) for d in heldout_dirs],
              "argv": argv or [], "classes": list(train_set.classes), "grid": list(grid),
              "images": {"training": len(train_set), "heldout": len(held) if held is not None else 0},
              "history": history, "grades": grades, "seconds": round(time.perf_counter() - t0, 1)}
    (tmp / VISION_RECORD).write_text(json.dumps(record, indent=1))
    tmp.rename(out)
    record["model_mib"] = export_checkpoint(out, model, processor)
    return record
