"""The FAST / OpenFAST action processor: [B, T, D] actions <-> lists of BPE ids.

File-compatible with the released processors (`physical-intelligence/fast`,
`allenai/MolmoAct2-FAST-Tokenizer`, tokenizers written by their `fit`): same `processor_config.json`
keys, `tokenizer.json` at the directory root, same ids and decoded actions for the same input.
Loading never executes the `processing_action_tokenizer.py` a released repo ships.

Differences from the reference, all on purpose (molmoact2.md §7, compat.md §2.4):
* decode never falls back to zeros on its own: it raises `DecodeError` with diagnostics;
  `on_error="zeros"` (PI parity) and `on_error="relaxed"` (LeRobot pi0-FAST parity) exist for
  experiments and return a `DecodeResult` whose failures are flagged;
* decode takes `time_horizon`/`action_dim` explicitly or from the loaded config, never from the
  previous encode call (the reference cache made decode depend on call order);
* decode never applies transformers' `clean_up_tokenization` (it deletes legitimate coefficients);
* encode refuses, by default, chunks whose integers the vocabulary cannot represent (the reference
  clips them or lets BPE drop them, so the ids decode to something else).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from molmoact2.openfast import bpe, codec
from molmoact2.openfast.dct import dct_time, idct_time
from molmoact2.openfast.errors import BadBytes, BadId, DecodeDiagnostics, DecodeError, EncodeRangeError

log = logging.getLogger(__name__)

PROCESSOR_CONFIG = "processor_config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
# Our own extra file (released repos do not have it): the trained range and how the fit went.
FIT_INFO = "openfast_fit.json"
FIT_INFO_FORMAT = "molmoact2.openfast.fit.v1"

# What the released configs point to. We do not ship that remote code; loaders that matter
# (ours, LeRobot's `from_pretrained_local`) ignore *.py anyway.
AUTO_MAP = {"AutoProcessor": "processing_action_tokenizer.UniversalActionProcessor"}
PROCESSOR_CLASS = "UniversalActionProcessor"
# transformers' "no limit" sentinel, as written in the released tokenizer_config.json.
MODEL_MAX_LENGTH = 1000000000000000019884624838656

ON_ERROR_MODES = ("raise", "zeros", "relaxed")
ON_OUT_OF_RANGE_MODES = ("raise", "reference")


@dataclass(frozen=True)
class OpenFastConfig:
    """`processor_config.json`'s numeric keys; defaults = the reference class defaults."""

    scale: float = 10
    vocab_size: int = 1024
    min_token: int = 0
    time_horizon: int | None = None
    action_dim: int | None = None


@dataclass
class EncodeResult:
    """Ids plus the evidence the reference encoder throws away."""

    ids: list[list[int]]
    integers: np.ndarray  # [B, T, D] int64 quantized DCT coefficients
    code_points: np.ndarray  # [B, T*D] int64, after min_token shift and the clip at 0
    clipped: np.ndarray  # [B, T*D] bool: integer < min_token, clipped to min_token by the reference
    unencodable: np.ndarray  # [B, T*D] bool: BPE would drop (part of) this character

    @property
    def flagged(self) -> bool:
        return bool(self.clipped.any() or self.unencodable.any())


@dataclass
class DecodeResult:
    """Decoded actions with per-sequence status. `actions` of failed sequences are whatever
    `on_error` chose (zeros or relaxed) and are FLAGGED by `ok[b] == False`."""

    actions: np.ndarray  # [B, T, D] float64
    ok: np.ndarray  # [B] bool
    diagnostics: list[DecodeDiagnostics]
    on_error: str
    fallback_used: list[int] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return not bool(self.ok.all())

    @property
    def failed(self) -> list[int]:
        return [i for i, good in enumerate(self.ok) if not good]


class OpenFastProcessor:
    """FAST encode/decode over a `tokenizers.Tokenizer`; see module docstring for the contract."""

    def __init__(self, tokenizer, config: OpenFastConfig = OpenFastConfig(), *, max_token: int | None = None,
                 notes: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.vocab = bpe.Vocabulary(tokenizer)
        if max_token is None:
            top = self.vocab.max_alphabet_code_point()
            max_token = None if top is None else config.min_token + top
        # None = unknown (a released file whose vocab does not reveal it): range checks are skipped.
        self.max_token = max_token
        self.notes = list(notes)

    # ------------------------------------------------------------------ properties
    @property
    def scale(self) -> float:
        return self.config.scale

    @property
    def min_token(self) -> int:
        return self.config.min_token

    def __repr__(self) -> str:
        c = self.config
        return (f"OpenFastProcessor(scale={c.scale}, vocab_size={c.vocab_size} (trained {self.vocab.size}), "
                f"min_token={c.min_token}, max_token={self.max_token}, time_horizon={c.time_horizon}, "
                f"action_dim={c.action_dim})")

    # ------------------------------------------------------------------ encode
    def encode(self, actions: np.ndarray, *, on_out_of_range: str = "raise") -> list[list[int]]:
        """[B, T, D] (or [T, D]) normalized actions -> B lists of ids (ragged).

        The DCT runs in the input's dtype, as in the reference. MolmoAct2's training pipeline casts chunks
        to float32 first, so pass float32 to reproduce its ids bit for bit.
        """
        return self.encode_detailed(actions, on_out_of_range=on_out_of_range).ids

    __call__ = encode

    def encode_detailed(self, actions: np.ndarray, *, on_out_of_range: str = "raise") -> EncodeResult:
        if on_out_of_range not in ON_OUT_OF_RANGE_MODES:
            raise ValueError(f"on_out_of_range: expected one of {ON_OUT_OF_RANGE_MODES}, got {on_out_of_range!r}")
        batch = as_batch(actions)
        integers = codec.quantize(dct_time(batch), self.scale)  # [B, T, D]
        flat = codec.flatten_frequency_major(integers)  # [B, T*D]
        code_points, clipped = codec.to_code_points(flat, self.min_token)
        unencodable = self.vocab.unencodable_mask(code_points)
        if on_out_of_range == "raise" and (clipped.any() or unencodable.any()):
            raise self._range_error(flat, clipped, unencodable)
        if unencodable.any():
            # "reference" mode: reproduce the reference ids, but never by accident of an exception.
            bad_cp = code_points[unencodable]
            if (bad_cp > 0x10FFFF).any() or ((bad_cp >= 0xD800) & (bad_cp <= 0xDFFF)).any():
                raise self._range_error(flat, clipped, unencodable,
                                        extra="some values are not even valid Unicode code points, so no "
                                              "reference implementation can encode them either")
        texts = [codec.code_points_to_text(row) for row in code_points]
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=True)
        ids = [list(e.ids) for e in encodings]
        return EncodeResult(ids=ids, integers=integers, code_points=code_points, clipped=clipped,
                            unencodable=unencodable)

    def _range_error(self, flat, clipped, unencodable, extra: str = "") -> EncodeRangeError:
        positions = [(int(b), int(c), int(flat[b, c])) for b, c in zip(*np.nonzero(clipped | unencodable))]
        lo = self.min_token
        hi = "?" if self.max_token is None else self.max_token
        def why(b: int, c: int) -> str:
            return "below min_token" if clipped[b, c] else "never seen in training: its byte symbols are not in the vocab"

        shown = ", ".join(f"seq {b} coef {c} = {v} ({why(b, c)})" for b, c, v in positions[:6])
        more = f" (+{len(positions) - 6} more)" if len(positions) > 6 else ""
        return EncodeRangeError(
            f"OpenFAST encode: {len(positions)} quantized DCT value(s) this tokenizer cannot represent "
            f"(trained integer range [{lo}, {hi}]): {shown}{more}. The reference encoder would clip values below "
            f"min_token and its BPE would silently drop unknown byte symbols, so the ids would decode to a "
            f"different chunk. Normalize actions to about [-1, 1] with the tokenizer's stats, lower `scale`, "
            f"re-fit on data covering this range, or pass on_out_of_range='reference' to get the reference ids. "
            f"{extra}".strip(),
            positions,
        )

    # ------------------------------------------------------------------ decode
    def resolve_shape(self, time_horizon: int | None, action_dim: int | None) -> tuple[int, int]:
        t = time_horizon if time_horizon is not None else self.config.time_horizon
        d = action_dim if action_dim is not None else self.config.action_dim
        if t is None or d is None:
            raise ValueError(
                "OpenFAST decode needs time_horizon and action_dim: pass them explicitly or load a tokenizer whose "
                f"processor_config.json sets them (this one has time_horizon={self.config.time_horizon}, "
                f"action_dim={self.config.action_dim}). They are never taken from a previous encode call."
            )
        for name, v in (("time_horizon", t), ("action_dim", d)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"OpenFAST decode: {name} must be a positive int, got {v!r}")
        return int(t), int(d)

    def decode(self, ids, time_horizon: int | None = None, action_dim: int | None = None, *,
               on_error: str = "raise"):
        """B id lists -> [B, T, D] float64 actions.

        on_error="raise" (default): returns the ndarray or raises `DecodeError`.
        on_error="zeros" | "relaxed": returns a `DecodeResult` (never a bare array) so the fallback
        cannot be mistaken for a real decode.
        """
        result = self.decode_detailed(ids, time_horizon, action_dim, on_error=on_error)
        if on_error == "raise":
            return result.actions
        return result

    def decode_detailed(self, ids, time_horizon: int | None = None, action_dim: int | None = None, *,
                        on_error: str = "raise") -> DecodeResult:
        if on_error not in ON_ERROR_MODES:
            raise ValueError(f"on_error: expected one of {ON_ERROR_MODES}, got {on_error!r}")
        t, d = self.resolve_shape(time_horizon, action_dim)
        sequences = as_id_batch(ids)
        n_coef = t * d
        coeffs = np.zeros((len(sequences), n_coef), dtype=np.int64)
        ok = np.ones(len(sequences), dtype=bool)
        diags: list[DecodeDiagnostics] = []
        valid = [self._valid_ids(seq) for seq in sequences]
        texts = self.tokenizer.decode_batch([v for v, _ in valid], skip_special_tokens=False)
        for b, ((good_ids, bad_ids), text) in enumerate(zip(valid, texts)):
            values = codec.text_to_integers(text, self.min_token)
            diag = DecodeDiagnostics(sequence_index=b, time_horizon=t, action_dim=d, num_ids=len(sequences[b]),
                                     expected_coefficients=n_coef, got_coefficients=len(values), bad_ids=bad_ids)
            problems = self._problems(diag, text, values)
            if problems:
                self._explain(diag, sequences[b], good_ids, text, values)
                ok[b] = False
            else:
                coeffs[b] = values
            diags.append(diag)
        actions = idct_time(codec.dequantize(coeffs.reshape(-1, t, d), self.scale)) if len(sequences) else \
            np.zeros((0, t, d))
        result = DecodeResult(actions=actions, ok=ok, diagnostics=diags, on_error=on_error)
        if ok.all():
            return result
        failed = [diags[b] for b in np.flatnonzero(~ok)]
        if on_error == "raise":
            partial = actions.copy()
            for dg in failed:
                partial[dg.sequence_index] = np.nan if dg.partial_actions is None else dg.partial_actions
            raise DecodeError(failed, partial)
        for dg in failed:
            b = dg.sequence_index
            if on_error == "zeros":
                # PI parity: an all-zero DCT chunk -> zero normalized actions (a constant pose once un-normalized).
                actions[b] = 0.0
            else:  # relaxed, LeRobot pi0-FAST parity: right-truncate / zero-pad the coefficients
                raw = codec.text_to_integers(texts[b], self.min_token)[:n_coef]
                padded = np.zeros(n_coef, dtype=np.int64)
                padded[: len(raw)] = raw
                actions[b] = idct_time(codec.dequantize(padded.reshape(t, d), self.scale))
            result.fallback_used.append(b)
            log.warning("OpenFAST decode: sequence %d failed, using on_error=%r fallback (flagged)", b, on_error)
        return result

    def _valid_ids(self, seq: Sequence) -> tuple[list[int], list[BadId]]:
        # Fast path: a clean integer sequence inside the vocabulary (the normal case) is checked vectorized.
        if seq and all(type(x) is int for x in seq):
            arr = np.fromiter(seq, dtype=np.int64, count=len(seq))
            if arr.min() >= 0 and arr.max() < self.vocab.size and self.vocab.dense:
                return list(seq), []
        good, bad = [], []
        for pos, x in enumerate(seq):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
                bad.append(BadId(pos, x, f"not an integer ({type(x).__name__})"))
            elif not 0 <= int(x) < self.vocab.size or self.vocab.id_to_token[int(x)] is None:
                bad.append(BadId(pos, int(x), f"outside the vocabulary [0, {self.vocab.size})"))
            else:
                good.append(int(x))
        return good, bad

    def _problems(self, diag: DecodeDiagnostics, text: str, values: np.ndarray) -> list[str]:
        p = diag.problems
        if diag.bad_ids:
            shown = ", ".join(f"{b.token_id!r} at position {b.position}" for b in diag.bad_ids[:5])
            p.append(f"{len(diag.bad_ids)} invalid id(s): {shown}")
        n_bad_chars = text.count("\ufffd")
        if n_bad_chars:
            p.append(f"{n_bad_chars} invalid UTF-8 sequence(s): the ids split a multi-byte character, so the "
                     f"reference would read U+FFFD = coefficient {0xFFFD + self.min_token}")
        if len(values) != diag.expected_coefficients:
            p.append(f"wrong length: {len(values)} coefficients decoded, {diag.expected_coefficients} expected"
                     + ("" if len(values) % diag.action_dim == 0 else
                        f" (not even a multiple of action_dim={diag.action_dim}: the reference reshape fails)"))
        if self.max_token is not None and len(values):
            outside = np.flatnonzero((values < self.min_token) | (values > self.max_token))
            outside = [int(i) for i in outside if text[i] != "\ufffd"]
            if outside:
                diag.out_of_range = [(i, int(values[i])) for i in outside]
                shown = ", ".join(f"coef {i} = {v}" for i, v in diag.out_of_range[:5])
                p.append(f"{len(outside)} coefficient(s) outside the trained range [{self.min_token}, "
                         f"{self.max_token}]: {shown}")
        return p

    def _explain(self, diag: DecodeDiagnostics, raw_ids: Sequence, good_ids: list[int], text: str,
                 values: np.ndarray) -> None:
        """Locate where the decode went wrong and build a partial reconstruction from the good prefix."""
        # Byte offsets at which each valid id's bytes start (tokens the vocab knows).
        starts, data = [], bytearray()
        for i in good_ids:
            starts.append(len(data))
            data += self.vocab.token_bytes(i)
        # Positions in the RAW sequence of the valid ids, to report positions the caller recognises.
        bad_positions = {b.position for b in diag.bad_ids}
        raw_pos = [p for p in range(len(raw_ids)) if p not in bad_positions]
        candidates: list[tuple[int, int]] = []  # (token position, coefficient index)
        if diag.bad_ids:
            pos = diag.bad_ids[0].position
            before = sum(1 for p in raw_pos if p < pos)
            candidates.append((pos, _char_count(bytes(data[: starts[before]] if before < len(starts) else data))))
        offset = 0
        while offset < len(data):
            try:
                bytes(data[offset:]).decode("utf-8")
                break
            except UnicodeDecodeError as e:
                at = offset + e.start
                k = int(np.searchsorted(starts, at, side="right")) - 1
                diag.bad_bytes.append(BadBytes(byte_offset=at, token_position=raw_pos[k], token_id=good_ids[k]))
                offset = offset + e.end
        if diag.bad_bytes:
            first = diag.bad_bytes[0]
            candidates.append((first.token_position, _char_count(bytes(data[: first.byte_offset]))))
        if diag.out_of_range:
            c = diag.out_of_range[0][0]
            candidates.append((self._token_of_char(starts, data, c, raw_pos), c))
        if len(values) != diag.expected_coefficients and not candidates:
            # Length is wrong but every piece is valid: point at the first id that is not what this
            # tokenizer would emit for the decoded text (a dropped/inserted/edited id usually breaks
            # BPE's canonical form there), else at the end of the sequence.
            canonical = self.tokenizer.encode(text, add_special_tokens=True).ids
            k = next((i for i, (a, b) in enumerate(zip(canonical, good_ids)) if a != b), None)
            if k is not None:
                diag.problems.append(f"ids stop being this tokenizer's canonical BPE output at position {raw_pos[k]} "
                                     f"(got id {good_ids[k]}, the tokenizer would emit {canonical[k]})")
                candidates.append((raw_pos[k], _char_count(bytes(data[: starts[k]]))))
        if not candidates:
            # Every id is valid and canonical, only the count is wrong: a dropped or inserted id anywhere
            # shifts every later coefficient into the wrong (frequency, dim) slot, so no prefix can be
            # trusted and no partial reconstruction is offered (on_error="relaxed" still pads/truncates).
            hint = (" If generation simply stopped early, the received prefix is right and on_error='relaxed' "
                    "zero-pads the missing high frequencies (flagged)." if len(values) < diag.expected_coefficients
                    else "")
            diag.problems.append("the ids are valid and canonical but carry the wrong number of coefficients; "
                                 "where an id was lost or added cannot be told from the ids alone." + hint)
            return
        tok, coef = min(candidates, key=lambda tc: tc[1])
        diag.diverged_at_token, diag.diverged_at_coefficient = tok, coef
        good = min(coef, diag.expected_coefficients, len(values))
        # A partial reconstruction needs at least every dimension's DC term (one whole frequency row).
        if good >= diag.action_dim:
            t, d = diag.time_horizon, diag.action_dim
            flat = np.zeros(t * d, dtype=np.int64)
            flat[:good] = values[:good]
            mask = np.zeros(t * d, dtype=bool)
            mask[:good] = True
            diag.partial_actions = idct_time(codec.dequantize(flat.reshape(t, d), self.scale))
            diag.received_mask = mask.reshape(t, d)

    def _token_of_char(self, starts: list[int], data: bytearray, char_index: int, raw_pos: list[int]) -> int:
        """Position (in the raw id sequence) of the token holding the first byte of character `char_index`."""
        text_prefix = bytes(data).decode("utf-8", errors="replace")[:char_index]
        byte_at = len(text_prefix.encode("utf-8"))
        k = int(np.searchsorted(starts, byte_at, side="right")) - 1
        return raw_pos[max(k, 0)] if raw_pos else 0

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, trajectories, vocab_size: int = 1024, scale: float = 10, *, time_horizon: int | None = None,
            action_dim: int | None = None, show_progress: bool = False) -> OpenFastProcessor:
        """Train the BPE on normalized action chunks (a list of [T, D] arrays or one [N, T, D] array).

        Same steps as the reference `fit` (compat.md §2.5): DCT each chunk, quantize, take min/max
        over the whole set, seed the alphabet chr(0..max-min), train BPE with min_frequency=2.
        """
        chunks = [np.asarray(c) for c in trajectories]
        if not chunks:
            raise ValueError("OpenFAST fit: expected at least one [T, D] action chunk, got none")
        for i, c in enumerate(chunks):
            if c.ndim != 2 or 0 in c.shape:
                raise ValueError(f"OpenFAST fit: chunk {i}: expected a non-empty [T, D] array, got shape {list(c.shape)}")
            if not np.all(np.isfinite(c)):
                raise ValueError(f"OpenFAST fit: chunk {i} contains NaN or inf")
        ints = [codec.flatten_frequency_major(codec.quantize(dct_time(c), scale)) for c in chunks]
        everything = np.concatenate(ints)
        max_token, min_token = int(everything.max()), int(everything.min())
        span = max_token - min_token
        if span > vocab_size:
            raise ValueError(
                f"OpenFAST fit: the quantized DCT values span {span} integers ([{min_token}, {max_token}] at "
                f"scale={scale}), more than vocab_size={vocab_size}. Raise vocab_size, lower scale, or normalize the "
                f"actions to about [-1, 1] first."
            )
        if span + 100 > vocab_size:
            warnings.warn(f"OpenFAST fit: alphabet of {span + 1} characters leaves fewer than 100 merges in "
                          f"vocab_size={vocab_size}; consider a larger vocabulary", stacklevel=2)
        strings = (codec.code_points_to_text(row - min_token) for row in ints)
        tok = bpe.train(strings, vocab_size=vocab_size, alphabet_size=span + 1, show_progress=show_progress)
        shapes = {c.shape for c in chunks}
        if time_horizon is None and len(shapes) == 1:
            time_horizon = chunks[0].shape[0]
        if action_dim is None and len({s[1] for s in shapes}) == 1:
            action_dim = chunks[0].shape[1]
        cfg = OpenFastConfig(scale=scale, vocab_size=int(vocab_size), min_token=min_token,
                             time_horizon=time_horizon, action_dim=action_dim)
        proc = cls(tok, cfg, max_token=max_token)
        proc.fit_info = {"num_chunks": len(chunks), "max_token": max_token, "min_token": min_token}
        return proc

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path, extra_fit_info: dict | None = None) -> Path:
        """Write the released layout: processor_config.json, tokenizer.json, tokenizer_config.json,
        special_tokens_map.json (flat at the root), plus our openfast_fit.json."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        c = self.config
        processor_config = {
            "action_dim": c.action_dim,
            "auto_map": AUTO_MAP,
            "min_token": int(c.min_token),
            "processor_class": PROCESSOR_CLASS,
            "scale": c.scale,
            "time_horizon": c.time_horizon,
            "vocab_size": int(c.vocab_size),
        }
        _write_json(out / PROCESSOR_CONFIG, processor_config)
        self.tokenizer.save(str(out / TOKENIZER_FILE), pretty=True)
        _write_json(out / TOKENIZER_CONFIG, {
            "added_tokens_decoder": {},
            "auto_map": AUTO_MAP,
            # false: transformers' cleanup deletes characters such as " ." that are legitimate coefficients.
            "clean_up_tokenization_spaces": False,
            "extra_special_tokens": {},
            "model_max_length": MODEL_MAX_LENGTH,
            "processor_class": PROCESSOR_CLASS,
            "tokenizer_class": "PreTrainedTokenizerFast",
        })
        _write_json(out / SPECIAL_TOKENS_MAP, {})
        info = {"format": FIT_INFO_FORMAT, "max_token": self.max_token, "min_token": int(c.min_token),
                "trained_vocab_size": self.vocab.size, **getattr(self, "fit_info", {}), **(extra_fit_info or {})}
        _write_json(out / FIT_INFO, info)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> OpenFastProcessor:
        """Load a local FAST tokenizer directory (ours, PI's FAST+, MolmoAct2-FAST-Tokenizer, any `fit` output).

        Never imports or executes the repo's `processing_action_tokenizer.py`.
        """
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"expected a FAST tokenizer directory (processor_config.json + tokenizer.json), "
                                    f"got {root} which is not a directory")
        notes: list[str] = []
        cfg_path = root / PROCESSOR_CONFIG
        raw: dict = {}
        if cfg_path.is_file():
            raw = json.loads(cfg_path.read_text(encoding="utf-8"))
        else:
            notes.append(f"{cfg_path.name} missing: using the reference defaults (scale 10, vocab 1024, min_token 0)")
        tok_path = root / TOKENIZER_FILE
        if not tok_path.is_file() and (root / "bpe_tokenizer" / TOKENIZER_FILE).is_file():
            # transformers 5.x saves PI's class with its `bpe_tokenizer` attribute in a subfolder.
            tok_path = root / "bpe_tokenizer" / TOKENIZER_FILE
            notes.append("tokenizer.json found in bpe_tokenizer/ (transformers 5.x layout), not at the root")
        tokenizer, tok_notes = bpe.load(tok_path)
        notes += tok_notes
        tcfg = root / TOKENIZER_CONFIG
        if tcfg.is_file() and json.loads(tcfg.read_text(encoding="utf-8")).get("clean_up_tokenization_spaces"):
            notes.append("tokenizer_config.json sets clean_up_tokenization_spaces=true; transformers 4.x would delete "
                         "characters on decode there, we never apply that cleanup")
        config = OpenFastConfig(
            scale=_json_number(raw.get("scale", 10), "scale"),
            vocab_size=int(raw.get("vocab_size") or 1024),
            min_token=int(raw.get("min_token") or 0),
            time_horizon=_positive_or_none(raw.get("time_horizon"), "time_horizon"),
            action_dim=_positive_or_none(raw.get("action_dim"), "action_dim"),
        )
        max_token = None
        info_path = root / FIT_INFO
        if info_path.is_file():
            max_token = json.loads(info_path.read_text(encoding="utf-8")).get("max_token")
        proc = cls(tokenizer, config, max_token=max_token, notes=notes)
        proc.source_dir = root
        return proc

    def config_dict(self) -> dict:
        return asdict(self.config)


# ---------------------------------------------------------------------- helpers
def as_batch(actions) -> np.ndarray:
    """[T, D] -> [1, T, D]; [B, T, D] unchanged; anything else is refused with its shape."""
    arr = np.asarray(actions)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"OpenFAST encode: expected a numeric array [B, T, D] or [T, D], got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"OpenFAST encode: expected [B, T, D] or [T, D] (time, action dim) with no empty axis, "
                         f"got shape {list(np.shape(actions))}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"OpenFAST encode: actions contain NaN or inf (first at [b, t, d] = {bad})")
    return arr


def as_id_batch(ids) -> list[list]:
    """Accept B lists of ids, a 2-D int array, or ONE flat list of ids (-> B=1)."""
    if isinstance(ids, np.ndarray):
        if ids.ndim == 1:
            return [ids.tolist()]
        if ids.ndim == 2:
            return [row.tolist() for row in ids]
        raise ValueError(f"OpenFAST decode: expected ids as [B, n] or [n], got an array of shape {list(ids.shape)}")
    if isinstance(ids, (str, bytes)):
        raise ValueError("OpenFAST decode: expected lists of integer ids, got a string")
    ids = list(ids)
    if ids and all(not isinstance(x, (list, tuple, np.ndarray)) for x in ids):
        return [ids]
    out = []
    for b, seq in enumerate(ids):
        if not isinstance(seq, (list, tuple, np.ndarray)):
            raise ValueError(f"OpenFAST decode: sequence {b}: expected a list of ids, got {type(seq).__name__}")
        out.append(list(np.asarray(seq).tolist()) if isinstance(seq, np.ndarray) else list(seq))
    return out


def _char_count(data: bytes) -> int:
    return len(data.decode("utf-8", errors="replace"))


def _write_json(path: Path, obj) -> None:
    # 2-space indent, sorted keys, trailing newline: byte-identical to transformers' save for these files.
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")


def _json_number(v, name: str):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ValueError(f"processor_config.json: {name} must be a positive number, got {v!r}")
    return v


def _positive_or_none(v, name: str) -> int | None:
    # The reference treats 0 like "missing" (`or` chains); so do we.
    if v in (None, 0):
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"processor_config.json: {name} must be a positive int or null, got {v!r}")
    return v
