"""Nano training examples from the cached dataset, mixed by style (molmoact2.md §3-6).

    data = NanoTrainData.load("/tmp/nano_data", action_tokenizer="assets/openfast_so101_sim")
    data = NanoTrainData.load(["/tmp/nano_data", "/tmp/nano_scenes"])   # + questions from `train scenes`
    batch_examples = data.sample_batch(model, processor, rng, batch_size=16, mix=StyleMix())

Styles (the paper's mixture, our ratios):
  action        robot prompt (state bins) + `<action_output>`; targets: the continuous 30-step chunk
                for the flow expert AND the chunk's OpenFAST ids as discrete tokens (the expert never
                sees the discrete span, train_step.build_example hides it);
  depth         `<depth_output>`; target: the carried-forward depth buffer (MolmoThink, §5);
  depth_action  `<depth_output><action_output>`; targets: buffer, then OpenFAST ids, + the chunk;
  qa            a spatial question about the front image, answered in Molmo2-ER format.
The 10% random depth-code INPUT noise is applied in train_step.compute_losses (depth_noise_p).

Chunks past an episode's end repeat the last commanded action: the expert has succeeded and holds.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from molmoact2.training.nano_data import load_meta

STYLE_ORDER = ("action", "depth", "depth_action", "qa")
# A blanked camera picture (front dropout here, the camera probe's grey mode): mid-grey, the no-information value.
GREY_UINT8 = 128


@dataclass(frozen=True)
class StyleMix:
    """Sampling probabilities per style (normalized). Actions dominate because closed-loop control is
    the goal; depth_action trains the Think path end to end; QA keeps the pointing head alive."""

    action: float = 0.35
    depth: float = 0.15
    depth_action: float = 0.3
    qa: float = 0.2

    def probabilities(self) -> np.ndarray:
        p = np.array([self.action, self.depth, self.depth_action, self.qa], dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"StyleMix: expected non-negative weights with a positive sum, got {self}")
        return p / p.sum()

    @classmethod
    def parse(cls, text: str) -> "StyleMix":
        """'action=0.4,depth=0.1,depth_action=0.3,qa=0.2' -> StyleMix."""
        kw = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            if key not in STYLE_ORDER or not value:
                raise ValueError(f"--mix: expected entries like action=0.4 with keys {STYLE_ORDER}, got {part!r}")
            kw[key] = float(value)
        return cls(**kw)


class NanoTrainData:
    """The whole cache in memory (a few hundred MB for ~100 episodes at 96x96)."""

    def __init__(self, root: Path | list[Path], meta: dict[str, Any], episodes: list[dict[str, np.ndarray]],
                 qa: list[dict[str, Any]], norm_stats: dict[str, Any], action_tokenizer: Any = None,
                 progress: bool = False, scene_images: np.ndarray | None = None) -> None:
        self.roots = list(root) if isinstance(root, (list, tuple)) else [Path(root)]
        self.root = self.roots[0]
        self.meta, self.episodes, self.qa, self.norm_stats = meta, episodes, qa, norm_stats
        # front images of question-only scene caches (`molmoact2 train scenes`), indexed by item["scene"]
        self.scene_images = scene_images if scene_images is not None else np.zeros((0, 1, 1, 3), np.uint8)
        self.horizon = 30
        lengths = np.array([len(e["action"]) for e in episodes], dtype=np.int64)
        if (lengths.size == 0 and not len(self.scene_images)) or (lengths.size and lengths.min() < 1):
            raise ValueError(f"{root}: expected at least one non-empty episode (or question scenes), got episode "
                             f"lengths {lengths.tolist()}")
        # (episode, frame) for every frame, so frames are sampled uniformly; empty for a question-only cache
        self.index = np.concatenate([np.stack([np.full(n, i), np.arange(n)], 1) for i, n in enumerate(lengths)]) \
            if lengths.size else np.zeros((0, 2), np.int64)
        self.action_tokenizer = action_tokenizer
        self.grounding = False  # True: pointing questions carry their object's mask (qa_inputs)
        self.ground_actions = False  # True: action examples carry the instruction's object's pixels (frame_inputs)
        self.ground_first = 0  # > 0: only frames before this one are grounded, and half the action examples come from them
        self.reach = False  # True: action examples carry the instruction's object's centre (use_reach())
        self.reach_stats: tuple[np.ndarray, np.ndarray] | None = None
        self.offset_stats: tuple[np.ndarray, np.ndarray] | None = None  # set: action chunks carry offsets (use_offset())
        self.state_noise = 0.0  # > 0: robot examples' states get Gaussian noise of this fraction of each joint's range
        self.front_dropout = 0.0  # > 0: action examples' front image is blanked with this probability
        self.shift_frac = 0.0  # > 0: question pictures move by up to this share of the side, points with them
        self.arrival_share = 0.0  # > 0: this share of robot examples come from arrival chunks (use_arrival())
        self.arrival_index: np.ndarray = np.zeros((0, 2), np.int64)
        self.fast_ids: list[list[list[int] | None]] = []
        self.fast_failures = 0
        if action_tokenizer is not None:
            self._encode_fast(progress)

    @classmethod
    def load(cls, data_dir: str | os.PathLike | list[str | os.PathLike], action_tokenizer: Any = None,
             progress: bool = True) -> "NanoTrainData":
        """One cache, or several (demo caches and question-scene caches) merged into one training set.
        Norm stats come from the first cache holding demos (None for question scenes alone): actions are
        normalized with them, so a run resumed or initialized from a checkpoint lists its own demo cache first."""
        from molmoact2.training.nano_scenes import SCENES_KIND

        dirs = [Path(data_dir)] if isinstance(data_dir, (str, os.PathLike)) else [Path(d) for d in data_dir]
        if not dirs:
            raise ValueError("NanoTrainData.load: expected at least one data directory")
        episodes: list[dict[str, np.ndarray]] = []
        episode_meta: list[dict[str, Any]] = []
        scenes_meta: list[dict[str, Any]] = []
        images: list[np.ndarray] = []
        qa: list[dict[str, Any]] = []
        stats = None
        first: dict[str, Any] = {}
        for c, root in enumerate(dirs):
            meta = load_meta(root)
            first = meta if c == 0 else first
            is_scenes = meta.get("kind") == SCENES_KIND
            base_episode, base_scene = len(episodes), sum(len(x) for x in images)
            for e in meta["episodes"]:
                with np.load(root / e["file"]) as z:
                    episodes.append({k: z[k] for k in z.files} | {"instruction": e["instruction"]})
                episode_meta.append(e | {"data": str(root)})
            if is_scenes:
                with np.load(root / "scenes.npz") as z:
                    images.append(z["front"])
                scenes_meta += [s | {"data": str(root)} for s in meta["scenes"]]
            for item in json.loads((root / "qa.json").read_text()):
                # the segmentation key inside THIS cache's qa_seg.npz, before indices are shifted by the merge
                if "scene" in item:
                    item = item | {"cache": c, "seg_key": f"s{item['scene']}", "scene": item["scene"] + base_scene}
                else:
                    item = item | {"cache": c, "seg_key": f"{item['episode']}_{item['frame']}",
                                   "episode": item["episode"] + base_episode}
                qa.append(item)
            if stats is None and not is_scenes:
                stats = json.loads((root / "norm_stats.json").read_text())
        merged = first if len(dirs) == 1 else {
            "format": first["format"], "config": first["config"], "caches": [str(d) for d in dirs],
            "episodes": episode_meta, "scenes": scenes_meta, "frames": int(sum(len(e["action"]) for e in episodes)),
            "qa_items": len(qa)}
        if isinstance(action_tokenizer, (str, os.PathLike)):
            from molmoact2.openfast import OpenFastProcessor

            action_tokenizer = OpenFastProcessor.load(action_tokenizer)
        return cls(dirs if len(dirs) > 1 else dirs[0], merged, episodes, qa, stats, action_tokenizer, progress,
                   scene_images=np.concatenate(images) if images else None)

    @property
    def tag(self) -> str:
        if self.norm_stats is None:
            raise ValueError(f"{self.root}: question scenes only (no demos, no norm stats): add a demo cache from "
                             f"`molmoact2 train data`")
        (tag,) = self.norm_stats["metadata_by_tag"]
        return tag

    def qa_image(self, item: dict[str, Any]) -> np.ndarray:
        """The front image a question is about (a demo frame, or a question-only scene)."""
        if "scene" in item:
            return self.scene_images[item["scene"]]
        return self.episodes[item["episode"]]["front"][item["frame"]]

    def qa_segmentation(self, item: dict[str, Any]) -> np.ndarray:
        root = self.roots[item.get("cache", 0)]
        key = item.get("seg_key", f"{item.get('episode')}_{item.get('frame')}")
        with np.load(root / "qa_seg.npz") as z:
            return z[key]

    # ---- targets -------------------------------------------------------------------------------
    def chunk(self, episode: int, frame: int) -> np.ndarray:
        """Raw actions [30, 6] from `frame` on; past the end the last action repeats."""
        a = self.episodes[episode]["action"]
        idx = np.minimum(np.arange(frame, frame + self.horizon), len(a) - 1)
        return a[idx]

    def normalized_chunk(self, episode: int, frame: int) -> np.ndarray:
        from molmoact2.models.nano.normalization import normalize_actions

        meta = self.norm_stats["metadata_by_tag"][self.tag]
        return normalize_actions(self.chunk(episode, frame), meta["action_stats"], self.norm_stats["norm_mode"])

    def _encode_fast(self, progress: bool) -> None:
        """OpenFAST ids of every frame's chunk, normalized with the CHECKPOINT's action stats: at
        inference the decoded chunk is un-normalized with them (inference.py), so both must agree."""
        from tqdm.auto import tqdm

        from molmoact2.openfast import EncodeRangeError

        for i in tqdm(range(len(self.episodes)), desc="OpenFAST targets", unit="ep", file=sys.stderr,
                      disable=not progress):
            chunks = np.stack([self.normalized_chunk(i, f) for f in range(len(self.episodes[i]["action"]))])
            try:
                ids: list[list[int] | None] = self.action_tokenizer.encode(chunks.astype(np.float32))
            except EncodeRangeError:  # encode one by one; a chunk outside the tokenizer's range gets no discrete target
                ids = []
                for c in chunks:
                    try:
                        ids.append(self.action_tokenizer.encode(c[None].astype(np.float32))[0])
                    except EncodeRangeError:
                        ids.append(None)
                        self.fast_failures += 1
            self.fast_ids.append(ids)

    def keep_questions(self, kinds: tuple[str, ...] | list[str]) -> None:
        """Keep only questions of these kinds (`train nano --qa-kinds point`): practise one skill."""
        here = sorted({q["kind"] for q in self.qa})
        unknown = sorted(set(kinds) - set(here))
        if unknown:
            raise ValueError(f"--qa-kinds: {unknown} not among this data's question kinds {here}")
        self.qa = [q for q in self.qa if q["kind"] in set(kinds)]

    # ---- examples ------------------------------------------------------------------------------
    def example_inputs(self, style: str, rng: np.random.Generator) -> dict[str, Any]:
        """Keyword arguments for train_step.build_example (without model/processor)."""
        if style == "qa":
            kw = self.qa_inputs(self.qa[int(rng.integers(len(self.qa)))])
            if self.shift_frac > 0:  # drawn only when asked, so every other run's random stream is unchanged
                from molmoact2.training.shift_augment import shifted_question

                kw, _ = shifted_question(kw, self.shift_frac, rng)
            return kw
        index = self.index
        if self.ground_actions and self.ground_first and style in ("action", "depth_action") and rng.random() < 0.5:
            index = index[index[:, 1] < self.ground_first]  # the frames where only the words name the object
        if self.arrival_share > 0 and style in ("action", "depth_action") and rng.random() < self.arrival_share:
            # drawn only when asked, so every other run's random stream is unchanged
            index = self.arrival_index
        e, f = (int(v) for v in index[int(rng.integers(len(index)))])
        kw = self.frame_inputs(style, e, f)
        if self.state_noise > 0:  # drawn only when asked, so every other run's random stream is unchanged
            kw["state"] = self.noisy_state(kw["state"], rng)
        if self.front_dropout > 0 and style == "action" and rng.random() < self.front_dropout:
            kw = self.without_front(kw)
        return kw

    @staticmethod
    def without_front(kw: dict[str, Any]) -> dict[str, Any]:
        """The example with its front image mid-grey: only the wrist camera, the words and the state are left to
        say where the arm should go. Only plain action examples (a depth_action example's depth codes describe the
        front image). The front-image targets (grounding cells, reach) go with the picture they point into."""
        front = np.asarray(kw["images"][0])
        kw = {k: v for k, v in kw.items() if k not in ("ground_mask", "reach_xy")}
        kw["images"] = [np.full_like(front, GREY_UINT8), *kw["images"][1:]]
        return kw

    def use_reach(self) -> None:
        """Give action examples the reach target (reach.py), standardized over every demo frame loaded."""
        from molmoact2.models.nano.reach import standardizer

        missing = [i for i, ep in enumerate(self.episodes) if "target_px48" not in ep]
        if missing:
            raise ValueError(f"--reach-weight: episode {missing[0]} has no per-frame target masks (target_px48): its "
                             f"cache was built before they were recorded; rebuild it with `molmoact2 train data`")
        self.reach_stats = standardizer(m for ep in self.episodes for m in ep["target_px48"])
        self.reach = True

    def use_offset(self) -> None:
        """Give action examples the expert's offset target (models/nano/offset.py), standardized over every demo
        frame loaded."""
        from molmoact2.models.nano.offset import standardizer

        missing = [i for i, ep in enumerate(self.episodes) if "target_offset_m" not in ep]
        if missing:
            raise ValueError(f"--offset-weight: episode {missing[0]} has no object-minus-jaw offsets "
                             f"(target_offset_m): its cache was built before they were recorded; rebuild it with "
                             f"`molmoact2 train data`")
        self.offset_stats = standardizer(ep["target_offset_m"] for ep in self.episodes)

    def offset_chunk(self, episode: int, frame: int) -> np.ndarray:
        """Standardized object-minus-jaw [30, 3] from `frame` on, aligned with `chunk` (past the end the last
        repeats)."""
        o = self.episodes[episode]["target_offset_m"]
        idx = np.minimum(np.arange(frame, frame + self.horizon), len(o) - 1)
        return (o[idx] - self.offset_stats[0]) / self.offset_stats[1]

    def use_arrival(self, share: float, near_cm: float) -> dict[str, int]:
        """Draw `share` of the robot examples from arrival chunks: frames where the jaw is farther than `near_cm`
        from the named object's centre and some tick of the 30-tick chunk from there comes within it (the chunk
        that brings the jaw to the object; at 2 cm, a pick's grasp: a touch or push leaves the jaw beside the
        object). Why: they are ~1 in 10 demo frames, and the closed loop's picks fail there (the jaw closes a few
        centimetres short). Returns the arrival frames per task."""
        missing = [i for i, ep in enumerate(self.episodes) if "target_offset_m" not in ep]
        if missing:
            raise ValueError(f"--arrival-share: episode {missing[0]} has no object-minus-jaw offsets "
                             f"(target_offset_m): its cache was built before they were recorded; rebuild it with "
                             f"`molmoact2 train data`")
        rows, per_task = [], {}
        tasks = [e.get("task", "?") for e in self.meta.get("episodes", [])]
        for i, ep in enumerate(self.episodes):
            dist_cm = np.linalg.norm(ep["target_offset_m"], axis=1) * 100.0
            n = len(dist_cm)
            # the nearest the jaw gets within each chunk [f, f + 30), the episode's last frames' chunks shorter
            ahead = np.array([dist_cm[f:f + self.horizon].min() for f in range(n)])
            frames = np.flatnonzero((dist_cm > near_cm) & (ahead <= near_cm))
            rows += [(i, int(f)) for f in frames]
            task = tasks[i] if i < len(tasks) else "?"
            per_task[task] = per_task.get(task, 0) + len(frames)
        if not rows:
            raise ValueError(f"--arrival-share: no demo frame's chunk brings the jaw within {near_cm} cm of its "
                             f"object (--arrival-cm); expected some in pick_place demos (a touch or push leaves the jaw "
                             f"beside its object: try a larger --arrival-cm)")
        self.arrival_index = np.asarray(rows, np.int64)
        self.arrival_share = share
        return per_task

    def noisy_state(self, state: Any, rng: np.random.Generator) -> np.ndarray:
        """`state` plus N(0, (state_noise * range)^2) per joint, range = the state stats' q99 - q01 (else max - min)."""
        stats = self.norm_stats["metadata_by_tag"][self.tag]["state_stats"]
        lo, hi = ("q01", "q99") if "q01" in stats and "q99" in stats else ("min", "max")
        span = np.asarray(stats[hi], np.float32) - np.asarray(stats[lo], np.float32)
        state = np.asarray(state, np.float32)
        return state + (rng.standard_normal(state.shape) * self.state_noise * span).astype(np.float32)

    def qa_inputs(self, item: dict[str, Any]) -> dict[str, Any]:
        kw = {"style": "qa", "images": [self.qa_image(item)], "question": item["question"], "answer": item["answer"]}
        if self.grounding and item["kind"] == "point" and item.get("labels"):
            # the named object's pixels: the grounding loss's target (train nano --ground-weight)
            kw["ground_mask"] = np.isin(self.qa_segmentation(item), item["labels"])
        return kw

    def frame_inputs(self, style: str, e: int, f: int) -> dict[str, Any]:
        """A robot-style example of episode `e`, frame `f` (style action | depth | depth_action)."""
        if style not in ("action", "depth", "depth_action"):
            raise ValueError(f"frame_inputs: expected style action | depth | depth_action, got {style!r}")
        ep = self.episodes[e]
        kw: dict[str, Any] = {"style": style, "images": [ep["front"][f], ep["wrist"][f]], "norm_tag": self.tag,
                              "task": ep["instruction"], "state": ep["state"][f]}
        if style in ("depth", "depth_action"):
            kw["depth_bins"] = ep["depth_buffer"][f]
        if style in ("action", "depth_action"):
            kw["actions"] = self.chunk(e, f)
            if self.fast_ids and self.fast_ids[e][f] is not None:
                kw["action_ids"] = self.fast_ids[e][f]
            if self.offset_stats is not None:
                kw["offset"] = self.offset_chunk(e, f)
            if self.ground_actions and "target_px48" not in ep:
                raise ValueError(f"--ground-actions: episode {e} has no per-frame target masks (target_px48): "
                                 f"its cache was built before they were recorded; rebuild it with "
                                 f"`molmoact2 train data`")
            # hidden (e.g. under the gripper): no target for this frame
            visible = "target_px48" in ep and ep["target_px48"][f].any()
            if self.ground_actions and visible and (not self.ground_first or f < self.ground_first):
                kw["ground_mask"] = ep["target_px48"][f]
            if self.reach and visible:  # use_reach() checked that every episode has the masks
                from molmoact2.models.nano.reach import reach_target

                kw["reach_xy"] = (reach_target(ep["target_px48"][f]) - self.reach_stats[0]) / self.reach_stats[1]
        return kw

    def sample_batch(self, model, processor, rng: np.random.Generator, batch_size: int,
                     mix: StyleMix = StyleMix()) -> tuple[list[dict[str, Any]], list[str]]:
        from molmoact2.models.nano.train_step import build_example

        if not self.qa:
            mix = StyleMix(mix.action, mix.depth, mix.depth_action, 0.0)
        if not len(self.index) and mix.probabilities()[:3].sum() > 0:
            raise ValueError(f"{self.root}: no demo frames for the action/depth styles; use --mix "
                             f"action=0,depth=0,depth_action=0,qa=1 or add a demo cache")
        styles = [STYLE_ORDER[i] for i in rng.choice(len(STYLE_ORDER), size=batch_size, p=mix.probabilities())]
        examples = [build_example(model, processor, **self.example_inputs(s, rng)) for s in styles]
        return examples, styles
