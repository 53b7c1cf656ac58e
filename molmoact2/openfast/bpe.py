"""Byte-level BPE over the FAST character string, done by the `tokenizers` library (no BPE here).

We build the same pipeline `tokenizers.ByteLevelBPETokenizer()` builds with default arguments —
ByteLevel pre-tokenizer (add_prefix_space=False, GPT-2 regex), ByteLevel decoder, ByteLevel
post-processor (trim_offsets=False), BPE model without unk token — because that is what decides the
ids in the released `tokenizer.json` files. Two consequences worth knowing (compat.md §2.6):
* every character chr(v) is UTF-8 encoded first, so v >= 128 becomes TWO byte symbols;
* a byte symbol missing from the vocabulary is silently DROPPED by the BPE model on encode.
This module exposes what is needed to detect both instead of trusting them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=1)
def byte_symbols() -> tuple[str, ...]:
    """The GPT-2 byte -> symbol table: printable bytes map to themselves, the other 68 bytes
    (0-32, 127-160, 173), in increasing order, to U+0100, U+0101, …"""
    keeps_itself = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    table, next_cp = [], 0x100
    for b in range(256):
        if b in keeps_itself:
            table.append(chr(b))
        else:
            table.append(chr(next_cp))
            next_cp += 1
    return tuple(table)


@lru_cache(maxsize=1)
def symbol_to_byte() -> dict[str, int]:
    return {s: b for b, s in enumerate(byte_symbols())}


def token_to_bytes(token: str) -> bytes:
    """Bytes a vocabulary entry stands for, with the ByteLevel decoder's rule: if every character
    is a byte symbol, map them; otherwise (a raw alphabet character such as chr(5) or chr(400))
    the token's own UTF-8 bytes are used."""
    table = symbol_to_byte()
    if all(c in table for c in token):
        return bytes(table[c] for c in token)
    return token.encode("utf-8")


def new_byte_level_bpe():
    """An untrained tokenizer with the ByteLevelBPETokenizer() default pipeline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def train(strings: Iterable[str], vocab_size: int, alphabet_size: int, show_progress: bool = False):
    """Train BPE on FAST strings with the reference trainer settings (compat.md §2.5).

    `alphabet_size` = max_token - min_token + 1: chr(0) … chr(alphabet_size-1) are seeded as the
    initial alphabet so every integer seen in training has a single-character entry.
    """
    from tokenizers.trainers import BpeTrainer

    tok = new_byte_level_bpe()
    trainer = BpeTrainer(
        vocab_size=int(vocab_size),
        min_frequency=2,
        show_progress=show_progress,
        special_tokens=[],
        initial_alphabet=[chr(i) for i in range(int(alphabet_size))],
        max_token_length=10000,
    )
    tok.train_from_iterator(strings, trainer=trainer)
    return tok


def check_byte_level_bpe(tokenizer_json: dict, where: str) -> list[str]:
    """Refuse tokenizer files that are not FAST's byte-level BPE; return notes on harmless drift."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{where}: expected a BPE model (FAST byte-level BPE), got model type {model.get('type')!r}")
    for key in ("pre_tokenizer", "decoder"):
        part = tokenizer_json.get(key) or {}
        if part.get("type") != "ByteLevel":
            raise ValueError(f"{where}: expected a ByteLevel {key} (FAST byte-level BPE), got {part.get('type')!r}")
    notes = []
    if tokenizer_json.get("normalizer") is not None:
        notes.append(f"{where}: has a normalizer {tokenizer_json['normalizer'].get('type')!r}; FAST files have none")
    if tokenizer_json.get("added_tokens"):
        notes.append(f"{where}: has {len(tokenizer_json['added_tokens'])} added tokens; FAST files have none")
    return notes


def load(path: str | Path):
    """Load a `tokenizer.json`, checking it is a FAST-style byte-level BPE. Returns (Tokenizer, notes)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a tokenizer.json at {path}, found nothing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected JSON (a tokenizers `tokenizer.json`), got a parse error: {e}") from e
    notes = check_byte_level_bpe(data, str(path))
    return Tokenizer.from_file(str(path)), notes


class Vocabulary:
    """Fast lookups over a loaded tokenizer: id -> token string/bytes, and which code points encode."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.size = max(vocab.values()) + 1 if vocab else 0
        self.id_to_token: list[str | None] = [None] * self.size
        for token, i in vocab.items():
            self.id_to_token[i] = token
        self.token_to_id = vocab
        self.dense = all(t is not None for t in self.id_to_token)  # ids 0..size-1 all assigned
        self._encodable: dict[int, bool] = {}

    def token_bytes(self, token_id: int) -> bytes:
        token = self.id_to_token[token_id]
        return b"" if token is None else token_to_bytes(token)

    def encodable(self, code_point: int) -> bool:
        """True when chr(code_point) survives BPE encode (all its byte symbols are in the vocab)."""
        hit = self._encodable.get(code_point)
        if hit is None:
            if not 0 <= code_point <= 0x10FFFF or 0xD800 <= code_point <= 0xDFFF:
                hit = False  # not a Unicode scalar value: chr() fails or Rust strings reject it
            else:
                table = byte_symbols()
                hit = all(table[b] in self.token_to_id for b in chr(code_point).encode("utf-8"))
            self._encodable[code_point] = hit
        return hit

    def unencodable_mask(self, code_points: np.ndarray) -> np.ndarray:
        flat = np.asarray(code_points, dtype=np.int64)
        uniq = np.unique(flat)
        bad = [int(v) for v in uniq if not self.encodable(int(v))]
        return np.isin(flat, bad) if bad else np.zeros(flat.shape, dtype=bool)

    def max_alphabet_code_point(self) -> int | None:
        """Largest trained integer offset (max_token - min_token) when the vocab reveals it.

        The initial alphabet is chr(0..N); byte symbols only reach U+0143 (323), so a single-character
        entry above 323 can only be alphabet and the largest one is N. Below that it is ambiguous.
        """
        singles = [ord(t) for t in self.token_to_id if len(t) == 1]
        top = max(singles, default=-1)
        return top if top > 0x143 else None
