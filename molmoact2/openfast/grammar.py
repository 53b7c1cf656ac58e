"""Which OpenFAST ids keep a sequence decodable: the length grammar behind constrained discrete decoding.

A FAST sequence decodes only if its text holds exactly `time_horizon * action_dim` characters (one per DCT
coefficient), all whole UTF-8 characters inside the trained range. A language model decoding greedily knows
none of that, and a small one often stops a few coefficients short or long (MolmoAct2-Nano: about half its
held-out chunks; the real model decodes unconstrained too, molmoact2.md §7). Masking, at every step, the ids
that would break the count (and the end marker until the count is reached) makes every sequence decodable while
keeping the model's own choice wherever that choice was legal anyway.

    grammar = LengthGrammar.of(processor, n_coefficients=30 * 6)
    state = grammar.start                       # (coefficients so far, bytes of an unfinished character)
    ok = grammar.allowed(state)                 # bool [vocab]: ids that may come next
    state = grammar.advance(state, token_id)
    grammar.may_end(state)                      # True once exactly n_coefficients whole characters are in

Byte-level BPE encodes a character of code point >= 128 as two bytes, which may sit in two ids (compat.md §2.6),
so the state carries the bytes of an unfinished character; an id is allowed only if the bytes so far plus its own
stay valid UTF-8, every character it completes is in the trained range, and the coefficients it adds plus the
fewest needed to finish its own unfinished character still fit.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

State = tuple[int, bytes]  # (whole characters so far, bytes of the unfinished one)
_NEVER = 1 << 30  # cost of an unfinished character nothing in the vocabulary can finish


@dataclass(frozen=True)
class _Table:
    chars: np.ndarray  # int64 [vocab]: whole characters an id completes from this pending state; -1 = invalid
    exits: list[bytes]  # per id: the unfinished bytes it leaves (b"" when it ends on a whole character)
    cost: np.ndarray  # int64 [vocab]: chars + the fewest characters needed to finish what it leaves


@dataclass(frozen=True)
class LengthGrammar:
    token_bytes: tuple[bytes, ...]  # per id; b"" = unassigned
    top_code_point: int  # max_token - min_token: the largest character (code point) a coefficient may be
    n_coefficients: int
    _tables: dict = field(default_factory=dict, repr=False, compare=False)  # pending bytes -> _Table (lazy)
    _finish: dict = field(default_factory=dict, repr=False, compare=False)  # pending bytes -> fewest chars to close

    start: ClassVar[State] = (0, b"")

    @classmethod
    def of(cls, processor, n_coefficients: int) -> "LengthGrammar":
        """The grammar of `processor`'s vocabulary (an `OpenFastProcessor`) for sequences of `n_coefficients`."""
        if int(n_coefficients) != n_coefficients or n_coefficients < 1:
            raise ValueError(f"n_coefficients: expected a positive whole number (time_horizon x action_dim), "
                             f"got {n_coefficients!r}")
        vocab = processor.vocab
        if processor.max_token is None:
            raise ValueError("constrained OpenFAST decoding needs the tokenizer's trained range (max_token), and this "
                             "vocabulary does not reveal it: without it no id can be ruled out of range")
        top = processor.max_token - processor.min_token
        grammar = cls(token_bytes=tuple(vocab.token_bytes(i) for i in range(vocab.size)), top_code_point=top,
                      n_coefficients=int(n_coefficients))
        if grammar._finish_cost(b"") != 0 or not (grammar._table(b"").cost == 1).any():
            raise ValueError("OpenFAST vocabulary: no id is a single whole in-range character, so the length "
                             "grammar could not finish every sequence")
        return grammar

    # ---- stepping ------------------------------------------------------------------------------------
    def allowed(self, state: State) -> np.ndarray:
        """bool [vocab]: the ids that may follow `state` and still leave a way to end on exactly n_coefficients."""
        count, pending = state
        if not 0 <= count <= self.n_coefficients:
            raise ValueError(f"state: expected 0..{self.n_coefficients} coefficients, got {count}")
        return self._table(pending).cost <= self.n_coefficients - count

    def advance(self, state: State, token_id: int) -> State:
        if not self.allowed(state)[token_id]:
            raise ValueError(f"OpenFAST id {token_id} is not allowed after {state[0]} coefficients "
                             f"(unfinished bytes {state[1]!r})")
        table = self._table(state[1])
        return state[0] + int(table.chars[token_id]), table.exits[token_id]

    def may_end(self, state: State) -> bool:
        return state[0] == self.n_coefficients and state[1] == b""

    # ---- tables --------------------------------------------------------------------------------------
    def _step(self, pending: bytes, data: bytes) -> tuple[int, bytes] | None:
        """Whole characters `pending + data` completes and the bytes it leaves; None if invalid or out of range."""
        if not data:
            return None
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        try:
            text = decoder.decode(pending + data, final=False)
        except UnicodeDecodeError:
            return None
        if text and max(map(ord, text)) > self.top_code_point:
            return None
        rest = decoder.getstate()[0]
        if rest and _lowest_code_point(rest) > self.top_code_point:
            return None  # whatever finishes this character, it is out of range (and its prefixes are many)
        return len(text), rest

    def _table(self, pending: bytes) -> _Table:
        if pending not in self._tables:
            chars = np.full(len(self.token_bytes), -1, dtype=np.int64)
            exits = [b""] * len(self.token_bytes)
            for i, data in enumerate(self.token_bytes):
                step = self._step(pending, data)
                if step is not None:
                    chars[i], exits[i] = step
            cost = np.full(len(self.token_bytes), _NEVER, dtype=np.int64)
            for i in np.flatnonzero(chars >= 0):
                cost[i] = chars[i] + (0 if not exits[i] else self._finish_cost(exits[i]))
            self._tables[pending] = _Table(chars=chars, exits=exits, cost=np.minimum(cost, _NEVER))
        return self._tables[pending]

    def _finish_cost(self, pending: bytes) -> int:
        """Fewest whole characters a continuation from `pending` needs before it rests on a character boundary."""
        if not pending:
            return 0
        if pending not in self._finish:
            # From `pending` an id either extends the character (no whole one yet, more bytes pending: at most
            # 4 bytes, so that recursion ends) or finishes it, maybe leaving a new unfinished one. The placeholder
            # breaks a cycle through such ids; an overestimate only makes `allowed` stricter, never a dead end.
            self._finish[pending] = _NEVER
            best = _NEVER
            for data in self.token_bytes:
                step = self._step(pending, data)
                if step is not None:
                    chars, rest = step
                    best = min(best, chars + (self._finish_cost(rest) if rest else 0))
            self._finish[pending] = best
        return self._finish[pending]


def _lowest_code_point(prefix: bytes) -> int:
    """The smallest code point any character starting with the valid, unfinished UTF-8 `prefix` can have."""
    lead = prefix[0]
    size = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    bits = lead & (0x7F >> size)
    for byte in prefix[1:]:
        bits = bits << 6 | (byte & 0x3F)
    return bits << 6 * (size - len(prefix))
