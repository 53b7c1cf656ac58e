"""MolmoAct2's token vocabulary, robot prompt, state bins and generated-output grammar.

This is the *format* layer: pure numpy + regex, no torch, no tokenizer. Everything here mirrors the
behaviour of the official remote code (LeRobot port of `allenai/MolmoAct2`,
`molmoact2_hf_model/modeling_molmoact2.py`: `_normalize_question_text`, `_FeatureNormalizer`,
`_discretize_normalized_state`, `_build_robot_text`, `_extract_discrete_token_bins`), re-written in
our own words. Where we deliberately differ, the docstring says so:

* Output parsing is STRICT. The official code scans for the first start marker, keeps every id
  that happens to be in the family's id range and ignores the rest (a 99-code depth map or a
  stray token passes silently). `parse_generated` instead raises `TokenFormatError` naming what
  was expected, what arrived and where, because a silently shortened action sequence decodes to
  a wrong (constant) action on a real robot.
* `build_robot_prompt` refuses an empty task (the official builder would emit "The task is to .").

Findings from the official code that shape this module (read 2026-11, LeRobot main):

* Task normalization order: collapse whitespace → repeat until nothing changes {strip surrounding
  quote/bracket characters; drop one leading `task:`/`instruction:`/`language_instruction:`/
  `goal:` (":" or "-") and one leading "the task is to"/"your task is to"; drop trailing sentence
  punctuation, then trailing closing quotes/brackets, then punctuation again} → split on runs of
  `.`/`!`/`?` and join the non-empty pieces with "; " (only when there are at least two) →
  lowercase. Inner quotes are kept; a leading "." is kept.
* State normalization runs in float32 with eps = 1e-6 on the denominator. Bounded modes
  (`min_max`, `q01_q99`, `q10_q90`) clip to [-1, 1]; `mean_std` does not clip (the later bin step
  does). Then, in this order: `mask` (False → the RAW value passes through), then dimensions
  whose `min == max` become exactly 0.0 (for the quantile modes only when min/max are present),
  then NaN → 0, +inf → +1, -inf → -1, clip to [-1, 1], `np.rint((s + 1) / 2 * 255)` and clip to
  0..255. `np.rint` rounds half to EVEN: s = 0 gives 127.5 → 128, while 126.5 → 126 and
  254.5 → 254. So a NaN state reads as bin 128, not 127.
* Prompt: the official inference code knows two styles: `robot_depth_action` (depth question +
  `<depth_output><action_output>`) and everything else (action question + `<action_output>`).
  `robot_depth` (trigger `<depth_output>` alone) appears only in our reference notes; we give it
  the depth question text and flag it in `OFFICIAL_STYLES` as not produced by official inference.
* The state clause is omitted when there is no state; setup/control are wrapped in their marker
  tokens only when the checkpoint's `add_setup_tokens` / `add_control_tokens` are true, the
  string is non-empty and not already wrapped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

ACTION_OUTPUT = "<action_output>"
ACTION_START = "<action_start>"
ACTION_END = "<action_end>"
STATE_START = "<state_start>"
STATE_END = "<state_end>"
DEPTH_OUTPUT = "<depth_output>"
DEPTH_START = "<depth_start>"
DEPTH_END = "<depth_end>"
SETUP_START = "<setup_start>"
SETUP_END = "<setup_end>"
CONTROL_START = "<control_start>"
CONTROL_END = "<control_end>"

IMAGE = "<|image|>"  # placeholder the processor expands into image patch tokens
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
EOS_TOKENS = (IM_END, ENDOFTEXT)

# Image tokens the official processor substitutes for IMAGE (inputs only, never generated).
IMAGE_PATCH_TOKENS = (
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
)

NUM_ACTION_TOKENS = 2048  # OpenFAST BPE vocabulary
NUM_STATE_TOKENS = 256
NUM_DEPTH_TOKENS = 128  # depth VQ-VAE codebook size
NUM_DEPTH_CODES = 100  # 10 x 10 grid, row-major

OUTPUT_STYLES = ("robot_action", "robot_depth", "robot_depth_action")
# Styles the official `predict_action` builds; `robot_depth` is ours (see module docstring).
OFFICIAL_STYLES = ("robot_action", "robot_depth_action")
TRIGGERS = {
    "robot_action": ACTION_OUTPUT,
    "robot_depth": DEPTH_OUTPUT,
    "robot_depth_action": DEPTH_OUTPUT + ACTION_OUTPUT,
}

MARKER_TOKENS = (
    ACTION_OUTPUT,
    ACTION_START,
    ACTION_END,
    STATE_START,
    STATE_END,
    DEPTH_OUTPUT,
    DEPTH_START,
    DEPTH_END,
    SETUP_START,
    SETUP_END,
    CONTROL_START,
    CONTROL_END,
)


def _indexed(prefix: str, k: int, n: int) -> str:
    k_int = int(k)
    if k_int != k or not 0 <= k_int < n:
        raise ValueError(f"<{prefix}_k>: expected an integer k in 0..{n - 1}, got {k!r}")
    return f"<{prefix}_{k_int}>"


def action_token(k: int) -> str:
    """`<action_k>` for an OpenFAST id k in 0..2047."""
    return _indexed("action", k, NUM_ACTION_TOKENS)


def state_token(k: int) -> str:
    """`<state_k>` for a state bin k in 0..255."""
    return _indexed("state", k, NUM_STATE_TOKENS)


def depth_token(k: int) -> str:
    """`<depth_k>` for a depth VQ code k in 0..127."""
    return _indexed("depth", k, NUM_DEPTH_TOKENS)


def special_tokens(*, include_chat: bool = True, include_image: bool = True) -> list[str]:
    """Every MolmoAct2 special token, in a fixed order (tokenizer builders rely on it).

    Order: chat tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`), the 12 marker tokens,
    `<action_0..2047>`, `<state_0..255>`, `<depth_0..127>`, then the input-only image tokens
    (`<|image|>` and the processor's patch tokens). Generated tokens come first so a model whose
    output head covers only the first rows (as the real `lm_head` does) can still emit them.
    """
    out: list[str] = []
    if include_chat:
        out += [ENDOFTEXT, IM_START, IM_END]
    out += list(MARKER_TOKENS)
    out += [f"<action_{k}>" for k in range(NUM_ACTION_TOKENS)]
    out += [f"<state_{k}>" for k in range(NUM_STATE_TOKENS)]
    out += [f"<depth_{k}>" for k in range(NUM_DEPTH_TOKENS)]
    if include_image:
        out += [IMAGE, *IMAGE_PATCH_TOKENS]
    return out


# --------------------------------------------------------------------------------------------
# Task normalization
# --------------------------------------------------------------------------------------------

_TRAILING_PUNCT = ".,!?;:\u2026"
_TRAILING_CLOSERS = "\"'\u201d\u2019)]}"
_SURROUNDING = "\"'`\u201c\u201d\u2018\u2019[](){}"
_LEADING_LABEL = re.compile(r"^(?:task|instruction|language[_ ]instruction|goal)\s*[:\-]\s*", re.IGNORECASE)
_LEADING_PHRASE = re.compile(r"^(?:the\s+task\s+is\s+to|your\s+task\s+is\s+to)\s+", re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"[.!?]+")


def _normalize_once(s: str) -> str:
    s = s.strip().strip(_SURROUNDING).strip()
    for pattern in (_LEADING_LABEL, _LEADING_PHRASE):
        s = pattern.sub("", s, count=1).strip()
    s = s.rstrip(_TRAILING_PUNCT).rstrip()
    s = s.rstrip(_TRAILING_CLOSERS).rstrip()
    return s.rstrip(_TRAILING_PUNCT).rstrip()


def normalize_task(text: str) -> str:
    """Normalize a language instruction exactly as the official `predict_action` does.

    >>> normalize_task('  Task: Pick up the red cup.  Then stop! ')
    'pick up the red cup; then stop'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_task: expected str, got {type(text).__name__}")
    s = re.sub(r"\s+", " ", text).strip()
    previous = None
    # Peeling one layer can expose another ('"Task: x."' → 'Task: x' → 'x'), hence the fixpoint.
    while s and s != previous:
        previous = s
        s = _normalize_once(s)
    pieces = [p.strip() for p in _SENTENCE_BREAK.split(s) if p.strip()]
    if len(pieces) > 1:
        s = "; ".join(pieces)
    return s.lower()


# --------------------------------------------------------------------------------------------
# State normalization and bins
# --------------------------------------------------------------------------------------------

NORM_MODES = ("min_max", "mean_std", "q01_q99", "q10_q90", "none")
_BOUNDED = ("min_max", "q01_q99", "q10_q90")
_EPS = 1e-6  # official denominator floor; a zero-width range is handled by the min==max rule


def _stat(stats: Mapping[str, Any], key: str, mode: str, dim: int) -> np.ndarray:
    if key not in stats or stats[key] is None:
        present = sorted(k for k, v in stats.items() if v is not None)
        raise ValueError(f"norm_mode={mode!r} needs state stats {key!r}; the stats have {present}")
    arr = np.asarray(stats[key], dtype=np.float32).reshape(-1)
    if arr.shape[0] != dim:
        raise ValueError(f"state stats {key!r} has {arr.shape[0]} values but the state has {dim} dims")
    return arr


def normalize_state(state: Any, stats: Mapping[str, Any] | None, norm_mode: str) -> np.ndarray:
    """Raw robot state → normalized float32 state, following `norm_stats.json` conventions.

    `state` is [..., D]; `stats` is one tag's `state_stats` (keys among mean, std, min, max,
    q01, q99, q10, q90, mask). NaN/inf are NOT replaced here (see `state_bins`).
    """
    if norm_mode not in NORM_MODES:
        raise ValueError(f"norm_mode: expected one of {NORM_MODES}, got {norm_mode!r}")
    raw = np.asarray(state, dtype=np.float32)
    if raw.ndim == 0:
        raise ValueError("state: expected an array [..., D], got a scalar")
    dim = raw.shape[-1]
    stats = {} if stats is None else stats
    if not isinstance(stats, Mapping):
        raise TypeError(f"stats: expected a mapping like norm_stats.json's state_stats, got {type(stats).__name__}")

    zero = None  # dims with min == max: the official code pins them to exactly 0
    if norm_mode == "none":
        normed = raw
    elif norm_mode == "mean_std":
        mean, std = _stat(stats, "mean", norm_mode, dim), _stat(stats, "std", norm_mode, dim)
        normed = (raw - mean) / np.maximum(std, _EPS)
    else:
        if norm_mode == "min_max":
            lo, hi = _stat(stats, "min", norm_mode, dim), _stat(stats, "max", norm_mode, dim)
        else:
            lo_key, hi_key = norm_mode.split("_")
            lo, hi = _stat(stats, lo_key, norm_mode, dim), _stat(stats, hi_key, norm_mode, dim)
        normed = np.float32(2.0) * (raw - lo) / np.maximum(hi - lo, _EPS) - np.float32(1.0)
        normed = np.clip(normed, -1.0, 1.0)
        if stats.get("min") is not None and stats.get("max") is not None:
            zero = _stat(stats, "min", norm_mode, dim) == _stat(stats, "max", norm_mode, dim)
    if stats.get("mask") is not None:
        mask = np.asarray(stats["mask"], dtype=bool).reshape(-1)
        if mask.shape[0] != dim:
            raise ValueError(f"state stats 'mask' has {mask.shape[0]} values but the state has {dim} dims")
        normed = np.where(mask, normed, raw)  # masked-out dims pass through un-normalized
    if zero is not None:
        normed = np.where(zero, np.float32(0.0), normed)
    return np.asarray(normed, dtype=np.float32)


def state_bins(normalized_state: Any, num_bins: int = NUM_STATE_TOKENS) -> np.ndarray:
    """Normalized state in [-1, 1] → int64 bins 0..num_bins-1 (NaN → 0, ±inf → ±1, half-to-even)."""
    s = np.asarray(normalized_state, dtype=np.float32)
    s = np.nan_to_num(s, nan=0.0, posinf=1.0, neginf=-1.0)
    s = np.clip(s, -1.0, 1.0)
    scaled = (s + np.float32(1.0)) / np.float32(2.0) * np.float32(num_bins - 1)
    return np.clip(np.rint(scaled).astype(np.int64), 0, num_bins - 1)


def discretize_state(state: Any, stats: Mapping[str, Any] | None, norm_mode: str) -> np.ndarray:
    """Raw robot state → 256 state bins (int64, same shape as `state`), as the model sees it."""
    return state_bins(normalize_state(state, stats, norm_mode))


def state_tokens_text(bins: Any) -> str:
    """`<state_start><state_a>…<state_end>` for a 1-D array of bins."""
    arr = np.asarray(bins).reshape(-1)
    return STATE_START + "".join(state_token(int(b)) for b in arr) + STATE_END


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------

_ACTION_QUESTION = "Given these, what action should the robot take to complete the task?"
_DEPTH_QUESTION = (
    "Given these, first predict the depth map of the main image "
    "and then predict the action the robot should take to complete the task?"
)


@dataclass(frozen=True)
class PromptParts:
    """The pieces of one robot prompt; `text` is their concatenation (what the processor gets)."""

    image_prefix: str
    user_text: str
    trigger: str
    task: str  # the task as it appears in the prompt (normalized if asked)
    style: str
    text: str


def _wrap(value: str, start: str, end: str, enabled: bool) -> str:
    if not value or not enabled or (value.startswith(start) and value.endswith(end)):
        return value
    return f"{start}{value}{end}"


def image_prefix(num_images: int) -> str:
    """`<|image|>` for one image, `Image 1<|image|>Image 2<|image|>…` for several, "" for none."""
    if int(num_images) != num_images or num_images < 0:
        raise ValueError(f"num_images: expected an integer >= 0, got {num_images!r}")
    if num_images == 1:
        return IMAGE
    return "".join(f"Image {i + 1}{IMAGE}" for i in range(int(num_images)))


def robot_prompt_parts(
    task: str,
    state_bins: Any | None,
    setup: str,
    control: str,
    num_images: int,
    output_style: str = "robot_action",
    *,
    add_setup_tokens: bool = True,
    add_control_tokens: bool = True,
    normalize_language: bool = True,
) -> PromptParts:
    """Build the robot prompt and return its parts (see `build_robot_prompt`)."""
    if output_style not in OUTPUT_STYLES:
        raise ValueError(f"output_style: expected one of {OUTPUT_STYLES}, got {output_style!r}")
    task_text = normalize_task(task) if normalize_language else str(task)
    if not task_text.strip():
        raise ValueError(f"task: expected a non-empty instruction, got {task!r}")
    state_clause = ""
    if state_bins is not None:
        bins = np.asarray(state_bins)
        if bins.ndim != 1 or bins.size == 0:
            raise ValueError(f"state_bins: expected a non-empty 1-D array of bins, got shape {bins.shape}")
        state_clause = f" The current state of the robot is {state_tokens_text(bins)}."
    setup_text = _wrap(str(setup or ""), SETUP_START, SETUP_END, add_setup_tokens)
    control_text = _wrap(str(control or ""), CONTROL_START, CONTROL_END, add_control_tokens)
    question = _ACTION_QUESTION if output_style == "robot_action" else _DEPTH_QUESTION
    user_text = (
        f"The task is to {task_text}. The setup is {setup_text}.{state_clause} "
        f"The expected control mode is {control_text}. {question}"
    )
    prefix = image_prefix(num_images)
    trigger = TRIGGERS[output_style]
    text = f"{prefix}{IM_START}user\n{user_text}{IM_END}\n{IM_START}assistant\n{trigger}"
    return PromptParts(prefix, user_text, trigger, task_text, output_style, text)


def build_robot_prompt(
    task: str,
    state_bins: Any | None,
    setup: str,
    control: str,
    num_images: int,
    output_style: str = "robot_action",
    *,
    add_setup_tokens: bool = True,
    add_control_tokens: bool = True,
    normalize_language: bool = True,
) -> str:
    """The exact text MolmoAct2's processor receives for one robot step.

    `state_bins` (from `discretize_state`) may be None: the state sentence is then left out (the
    official builder's behaviour when there is no state). `add_setup_tokens=False` /
    `add_control_tokens=False` give the variant for checkpoints converted without those markers.
    `normalize_language` mirrors `predict_action(normalize_language=True)`.
    """
    return robot_prompt_parts(
        task,
        state_bins,
        setup,
        control,
        num_images,
        output_style,
        add_setup_tokens=add_setup_tokens,
        add_control_tokens=add_control_tokens,
        normalize_language=normalize_language,
    ).text


# --------------------------------------------------------------------------------------------
# Token ids
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenIds:
    """Where each token family lives in a tokenizer's id space (names as in config.json).

    Indexed families are contiguous: `<depth_k>` has id `depth_token_start_id + k`. A family whose
    ids are None is unknown to this checkpoint and is never matched.
    """

    action_start_token_id: int | None = None
    action_end_token_id: int | None = None
    action_output_token_id: int | None = None
    action_token_start_id: int | None = None
    num_action_tokens: int = NUM_ACTION_TOKENS
    depth_start_token_id: int | None = None
    depth_end_token_id: int | None = None
    depth_output_token_id: int | None = None
    depth_token_start_id: int | None = None
    num_depth_tokens: int = NUM_DEPTH_TOKENS
    state_start_token_id: int | None = None
    state_end_token_id: int | None = None
    state_token_start_id: int | None = None
    num_state_tokens: int = NUM_STATE_TOKENS
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TokenIds":
        """Read the id fields of a checkpoint's config.json (dict)."""
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name == "eos_token_ids":
                continue
            if config.get(name) is not None:
                kwargs[name] = int(config[name])
        eos = config.get("eos_token_id")
        if eos is not None:
            kwargs["eos_token_ids"] = tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
        return cls(**kwargs)

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int]) -> "TokenIds":
        """Ids from a token → id mapping (e.g. `tokenizer.get_vocab()`); checks contiguity."""

        def family_start(prefix: str, n: int) -> int | None:
            first = vocab.get(f"<{prefix}_0>")
            if first is None:
                return None
            for k in range(n):
                if vocab.get(f"<{prefix}_{k}>") != first + k:
                    raise ValueError(
                        f"<{prefix}_k> ids must be contiguous: expected <{prefix}_{k}> = {first + k}, "
                        f"got {vocab.get(f'<{prefix}_{k}>')}"
                    )
            return int(first)

        return cls(
            action_start_token_id=vocab.get(ACTION_START),
            action_end_token_id=vocab.get(ACTION_END),
            action_output_token_id=vocab.get(ACTION_OUTPUT),
            action_token_start_id=family_start("action", NUM_ACTION_TOKENS),
            depth_start_token_id=vocab.get(DEPTH_START),
            depth_end_token_id=vocab.get(DEPTH_END),
            depth_output_token_id=vocab.get(DEPTH_OUTPUT),
            depth_token_start_id=family_start("depth", NUM_DEPTH_TOKENS),
            state_start_token_id=vocab.get(STATE_START),
            state_end_token_id=vocab.get(STATE_END),
            state_token_start_id=family_start("state", NUM_STATE_TOKENS),
            eos_token_ids=tuple(int(vocab[t]) for t in EOS_TOKENS if t in vocab),
        )

    def token_text(self, token_id: int) -> str | None:
        """The token string for an id this mapping knows, else None."""
        tid = int(token_id)
        singles = {
            self.action_start_token_id: ACTION_START,
            self.action_end_token_id: ACTION_END,
            self.action_output_token_id: ACTION_OUTPUT,
            self.depth_start_token_id: DEPTH_START,
            self.depth_end_token_id: DEPTH_END,
            self.depth_output_token_id: DEPTH_OUTPUT,
            self.state_start_token_id: STATE_START,
            self.state_end_token_id: STATE_END,
        }
        singles.pop(None, None)
        if tid in singles:
            return singles[tid]
        for prefix, start, n in (
            ("action", self.action_token_start_id, self.num_action_tokens),
            ("depth", self.depth_token_start_id, self.num_depth_tokens),
            ("state", self.state_token_start_id, self.num_state_tokens),
        ):
            if start is not None and start <= tid < start + n:
                return f"<{prefix}_{tid - start}>"
        return None  # EOS ids have no fixed text here (Qwen uses <|im_end|> or <|endoftext|>)


# --------------------------------------------------------------------------------------------
# Generated-output grammar
# --------------------------------------------------------------------------------------------


class TokenFormatError(ValueError):
    """Generated output does not follow MolmoAct2's output grammar.

    `expected`, `got` and `where` are also available as attributes for UIs.
    """

    def __init__(self, message: str, *, expected: str, got: str, where: str):
        super().__init__(f"{message} at {where}: expected {expected}, got {got}")
        self.expected, self.got, self.where = expected, got, where


class _Sym(NamedTuple):
    kind: str  # depth_start depth_end depth action_start action_end action eos other
    value: int  # code for depth/action, -1 otherwise
    raw: str  # as it appeared (token text, or "id N")
    where: str  # human position


@dataclass(frozen=True)
class GeneratedOutput:
    """A parsed MolmoAct2 generation (depth prefix and/or discrete action tokens)."""

    depth_bins: np.ndarray | None  # int64 [100], codes 0..127, row-major 10x10
    action_ids: np.ndarray | None  # int64 [N], OpenFAST ids 0..2047 (markers stripped)
    raw: str  # the text that was parsed (token text rebuilt from ids when ids were given)
    style: str  # robot_depth | robot_action | robot_depth_action (which segments were present)
    eos: str | None = None  # first end-of-sequence token after the last segment, if any

    @property
    def depth_grid(self) -> np.ndarray | None:
        """depth_bins as the 10x10 grid (row, col)."""
        return None if self.depth_bins is None else self.depth_bins.reshape(10, 10)


_ANGLE = re.compile(r"<\|?[^<>\s]*\|?>")
_INDEXED = re.compile(r"<(action|depth|state)_(-?\d+)>")
_SINGLES = {
    DEPTH_START: "depth_start",
    DEPTH_END: "depth_end",
    ACTION_START: "action_start",
    ACTION_END: "action_end",
    IM_END: "eos",
    ENDOFTEXT: "eos",
}


def _short(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "…")


def _lex_text(text: str) -> list[_Sym]:
    syms: list[_Sym] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():  # decoded text may put spaces between tokens
            i += 1
            continue
        where = f"token #{len(syms)} (char {i})"
        m = _ANGLE.match(text, i)
        if m is None:
            j = i
            while j < n and not text[j].isspace() and text[j] != "<":
                j += 1
            j = max(j, i + 1)
            syms.append(_Sym("other", -1, f"text {_short(text[i:j])}", where))
            i = j
            continue
        tok = m.group(0)
        if tok in _SINGLES:
            syms.append(_Sym(_SINGLES[tok], -1, tok, where))
        else:
            im = _INDEXED.fullmatch(tok)
            if im and im.group(1) in ("action", "depth"):
                syms.append(_Sym(im.group(1), int(im.group(2)), tok, where))
            else:
                syms.append(_Sym("other", -1, tok, where))
        i = m.end()
    return syms


def _lex_ids(ids: np.ndarray, token_ids: TokenIds) -> list[_Sym]:
    syms = []
    eos_ids = set(token_ids.eos_token_ids)
    for pos, tid in enumerate(ids.tolist()):
        where = f"position {pos} (id {tid})"
        if tid in eos_ids:
            syms.append(_Sym("eos", -1, f"EOS id {tid}", where))
            continue
        text = token_ids.token_text(tid)
        if text is None:
            syms.append(_Sym("other", -1, f"token id {tid} (not a depth/action/EOS id)", where))
            continue
        kind = _SINGLES.get(text)
        if kind is not None:
            syms.append(_Sym(kind, -1, text, where))
            continue
        im = _INDEXED.fullmatch(text)
        if im and im.group(1) in ("action", "depth"):
            syms.append(_Sym(im.group(1), int(im.group(2)), text, where))
        else:
            syms.append(_Sym("other", -1, text, where))
    return syms


class _Parser:
    def __init__(self, syms: list[_Sym], end_where: str):
        self.syms, self.i, self.end_where = syms, 0, end_where

    def peek(self) -> _Sym | None:
        return self.syms[self.i] if self.i < len(self.syms) else None

    def fail(self, message: str, expected: str, sym: _Sym | None) -> TokenFormatError:
        got = "end of output" if sym is None else sym.raw
        where = self.end_where if sym is None else sym.where
        return TokenFormatError(message, expected=expected, got=got, where=where)

    def codes(self, family: str, limit: int, exact: int | None, end_kind: str, end_tok: str) -> np.ndarray:
        start = self.syms[self.i]
        self.i += 1
        values: list[int] = []
        item = f"<{family}_k> (k in 0..{limit - 1})"
        while True:
            sym = self.peek()
            if sym is not None and sym.kind == family:
                if not 0 <= sym.value < limit:
                    raise self.fail(f"{family} code out of range", item, sym)
                if exact is not None and len(values) == exact:
                    raise self.fail(
                        f"too many {family} codes (a {exact + 1}th after {start.raw} at {start.where})",
                        f"{end_tok} after exactly {exact} codes",
                        sym,
                    )
                values.append(sym.value)
                self.i += 1
                continue
            if sym is not None and sym.kind == end_kind:
                if exact is not None and len(values) != exact:
                    raise self.fail(
                        f"wrong number of {family} codes: {len(values)} between {start.raw} and {end_tok}",
                        f"exactly {exact} {item} codes before {end_tok}",
                        sym,
                    )
                if not values:
                    raise self.fail(f"empty {family} segment", f"at least one {item}", sym)
                self.i += 1
                return np.asarray(values, dtype=np.int64)
            if sym is None:
                raise self.fail(f"missing {end_tok} ({len(values)} {family} codes so far)", f"{item} or {end_tok}", sym)
            raise self.fail(f"unexpected token inside the {family} segment", f"{item} or {end_tok}", sym)


def parse_generated(output: Any, token_ids: TokenIds | None = None) -> GeneratedOutput:
    """Parse MolmoAct2 generated output, strictly.

    Grammar: `[<depth_start> <depth_k>×100 <depth_end>] [<action_start> <action_k>+ <action_end>]
    EOS*` with at least one segment, depth first; EOS is `<|im_end|>` or `<|endoftext|>` (or the
    config's eos ids). `output` is decoded text (whitespace between tokens is ignored) or a
    sequence/array of token ids (`generated_token_ids`, shape [N] or [1, N]) — ids need
    `token_ids`. Any deviation raises `TokenFormatError` saying what was expected, what arrived
    and where.
    """
    if isinstance(output, str):
        syms = _lex_text(output)
        raw = output
        end_where = f"token #{len(syms)} (char {len(output)}, end of text)"
    else:
        ids = np.asarray(output)
        while ids.ndim > 1 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise TypeError(f"parse_generated: expected text or integer ids [N] / [1, N], got {ids.dtype} {ids.shape}")
        if token_ids is None:
            raise ValueError("parse_generated: token ids were given, so `token_ids` (TokenIds) is required")
        syms = _lex_ids(ids, token_ids)
        raw = " ".join(s.raw if s.kind != "other" else f"[{s.raw}]" for s in syms)
        end_where = f"position {len(syms)} (end of ids)"

    p = _Parser(syms, end_where)
    depth = action = None
    sym = p.peek()
    if sym is not None and sym.kind == "depth_start":
        depth = p.codes("depth", NUM_DEPTH_TOKENS, NUM_DEPTH_CODES, "depth_end", DEPTH_END)
    sym = p.peek()
    if sym is not None and sym.kind == "action_start":
        action = p.codes("action", NUM_ACTION_TOKENS, None, "action_end", ACTION_END)
    if depth is None and action is None:
        raise p.fail("no depth or action segment", f"{DEPTH_START} or {ACTION_START}", p.peek())
    eos = None
    while (sym := p.peek()) is not None and sym.kind == "eos":
        eos = eos or sym.raw
        p.i += 1
    sym = p.peek()
    if sym is not None:
        after = ACTION_END if action is not None else DEPTH_END
        expected = "end of output or an EOS token"
        if action is None:
            expected = f"{ACTION_START}, an EOS token or end of output"
        if eos is not None:
            expected = "end of output (only EOS tokens may follow the last EOS)"
        reason = f"unexpected token after {after}"
        if sym.kind == "depth_start" and action is not None:
            reason = "wrong order: the depth segment must come before the action segment"
        raise p.fail(reason, expected, sym)
    style = "robot_depth_action" if depth is not None and action is not None else (
        "robot_depth" if depth is not None else "robot_action"
    )
    return GeneratedOutput(depth_bins=depth, action_ids=action, raw=raw, style=style, eos=eos)


# --------------------------------------------------------------------------------------------
# Formatting (the other direction)
# --------------------------------------------------------------------------------------------


def _as_codes(values: Any, name: str, limit: int, exact: int | None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 and not (name == "depth_bins" and arr.shape == (10, 10)):
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    arr = arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    if exact is not None and arr.size != exact:
        raise ValueError(f"{name}: expected exactly {exact} codes, got {arr.size}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one code, got none")
    bad = (arr < 0) | (arr >= limit)
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"{name}: expected values in 0..{limit - 1}, got {int(arr[j])} at index {j}")
    return arr.astype(np.int64)


def format_depth_tokens(depth_bins: Any, sep: str = "") -> str:
    """100 depth codes (or a 10x10 grid) → `<depth_start><depth_k>…<depth_end>`."""
    arr = _as_codes(depth_bins, "depth_bins", NUM_DEPTH_TOKENS, NUM_DEPTH_CODES)
    return sep.join([DEPTH_START, *(f"<depth_{int(k)}>" for k in arr), DEPTH_END])


def format_action_tokens(action_ids: Any, sep: str = "") -> str:
    """OpenFAST ids → `<action_start><action_k>…<action_end>`."""
    arr = _as_codes(action_ids, "action_ids", NUM_ACTION_TOKENS, None)
    return sep.join([ACTION_START, *(f"<action_{int(k)}>" for k in arr), ACTION_END])


# Short aliases (used by notebooks/00_welcome.ipynb).
format_depth = format_depth_tokens
format_actions = format_action_tokens


def format_generated(
    depth_bins: Any | None = None, action_ids: Any | None = None, *, eos: str | None = IM_END, sep: str = ""
) -> str:
    """Text of a generation: depth segment, then action segment, then `eos` (None: no EOS)."""
    if depth_bins is None and action_ids is None:
        raise ValueError("format_generated: expected depth_bins and/or action_ids, got neither")
    parts = []
    if depth_bins is not None:
        parts.append(format_depth_tokens(depth_bins, sep))
    if action_ids is not None:
        parts.append(format_action_tokens(action_ids, sep))
    if eos is not None:
        if eos not in EOS_TOKENS:
            raise ValueError(f"eos: expected one of {EOS_TOKENS} or None, got {eos!r}")
        parts.append(eos)
    return sep.join(parts)


def encode_generated_ids(
    token_ids: TokenIds, depth_bins: Any | None = None, action_ids: Any | None = None, *, eos: bool = True
) -> np.ndarray:
    """The id sequence a model would generate for these codes (int64 [N])."""
    out: list[int] = []

    def need(value: int | None, name: str) -> int:
        if value is None:
            raise ValueError(f"encode_generated_ids: TokenIds.{name} is None, so this family cannot be encoded")
        return int(value)

    if depth_bins is None and action_ids is None:
        raise ValueError("encode_generated_ids: expected depth_bins and/or action_ids, got neither")
    if depth_bins is not None:
        arr = _as_codes(depth_bins, "depth_bins", NUM_DEPTH_TOKENS, NUM_DEPTH_CODES)
        base = need(token_ids.depth_token_start_id, "depth_token_start_id")
        out += [need(token_ids.depth_start_token_id, "depth_start_token_id"), *(base + arr).tolist()]
        out.append(need(token_ids.depth_end_token_id, "depth_end_token_id"))
    if action_ids is not None:
        arr = _as_codes(action_ids, "action_ids", NUM_ACTION_TOKENS, None)
        base = need(token_ids.action_token_start_id, "action_token_start_id")
        out += [need(token_ids.action_start_token_id, "action_start_token_id"), *(base + arr).tolist()]
        out.append(need(token_ids.action_end_token_id, "action_end_token_id"))
    if eos:
        if not token_ids.eos_token_ids:
            raise ValueError("encode_generated_ids: eos=True but TokenIds.eos_token_ids is empty")
        out.append(token_ids.eos_token_ids[0])
    return np.asarray(out, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Examples for the app's output inspector
# --------------------------------------------------------------------------------------------


def _example_codes(seed: int, n: int, limit: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, limit, size=n).astype(np.int64)


def examples() -> dict[str, str]:
    """A few generated outputs for one-click demos (deterministic; last one is malformed).

    Depth codes are a smooth-ish pattern (nearby cells share codes, like a real VQ map of a table
    scene); action ids are a 42-token OpenFAST sequence, the size of a typical 1 s chunk.
    """
    rows = np.arange(10)[:, None]
    cols = np.arange(10)[None, :]
    depth = ((rows // 3) * 17 + (cols // 4) * 5 + 3) % NUM_DEPTH_TOKENS
    depth[6:9, 3:7] = 91  # an object on the table: one distinct code patch
    action = _example_codes(7, 42, NUM_ACTION_TOKENS)
    good_depth_action = format_generated(depth.reshape(-1), action, eos=IM_END)
    discrete = format_generated(None, _example_codes(11, 35, NUM_ACTION_TOKENS), eos=IM_END)
    depth_only = format_depth_tokens(depth.reshape(-1))
    # A truncated generation: one depth code lost and the action segment never closed.
    malformed = (
        DEPTH_START
        + "".join(f"<depth_{int(k)}>" for k in depth.reshape(-1)[:99])
        + DEPTH_END
        + ACTION_START
        + "".join(f"<action_{int(k)}>" for k in action[:5])
    )
    return {
        "MolmoAct2-Think: depth + discrete action": good_depth_action,
        "MolmoAct2-Pretrain: discrete action": discrete,
        "MolmoAct2-Think (continuous): depth only": depth_only,
        "malformed: 99 depth codes, no <action_end>": malformed,
    }
