"""The OpenFAST length grammar: every sequence it allows decodes, and it allows every sequence the tokenizer makes."""

from __future__ import annotations

import numpy as np
import pytest

from _nano_fixtures import openfast
from molmoact2.openfast import OpenFastProcessor
from molmoact2.openfast.grammar import LengthGrammar


def _wide():
    """A tokenizer whose coefficients reach code points >= 128: two bytes each, often split over two ids."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 10)[:, None]
    chunks = [np.clip(np.sin(2 * np.pi * (t * rng.uniform(0.2, 1) + rng.uniform(0, 1, 2))) * 0.9, -1, 1)
              for _ in range(64)]
    # a small vocabulary on purpose: few merges, so many characters stay split into their two byte ids
    return OpenFastProcessor.fit(chunks, vocab_size=400, scale=60, time_horizon=10, action_dim=2), (10, 2)


@pytest.fixture(scope="module", params=["narrow", "wide"])
def tok(request):
    return (openfast(horizon=30, dim=6), (30, 6)) if request.param == "narrow" else _wide()


def _chunks(shape, n, seed):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, shape[0])[:, None]
    return np.stack([np.sin(2 * np.pi * (t * rng.uniform(0.2, 1.0) + rng.uniform(0, 1, shape[1]))) * 0.7
                     for _ in range(n)])


def test_any_walk_the_grammar_allows_decodes(tok):
    # Random choices stand for a model that knows nothing of the format: every walk the grammar allows must decode.
    tok, shape = tok
    grammar = LengthGrammar.of(tok, shape[0] * shape[1])
    rng = np.random.default_rng(0)
    unconstrained_ok = 0
    for _ in range(40):
        state, ids = grammar.start, []
        while not grammar.may_end(state):
            allowed = np.flatnonzero(grammar.allowed(state))
            assert allowed.size, f"dead end at {state}"
            ids.append(int(rng.choice(allowed)))
            state = grammar.advance(state, ids[-1])
        actions = tok.decode([ids], time_horizon=shape[0], action_dim=shape[1])
        assert actions.shape == (1, *shape) and np.isfinite(actions).all()
        free = rng.integers(0, tok.vocab.size, size=len(ids)).tolist()  # as many ids, no grammar
        unconstrained_ok += tok.decode([free], time_horizon=shape[0], action_dim=shape[1], on_error="relaxed").ok.all()
    assert unconstrained_ok < 10  # without it the same lengths mostly fail


def test_the_tokenizers_own_sequences_are_grammatical(tok):
    tok, shape = tok
    grammar = LengthGrammar.of(tok, shape[0] * shape[1])
    split = 0
    for ids in tok.encode(_chunks(shape, 30, seed=1)):
        state = grammar.start
        for i in ids:
            assert grammar.allowed(state)[i], f"id {i} refused after {state}"
            state = grammar.advance(state, i)
            split += state[1] != b""
        assert grammar.may_end(state)
    if max(tok.max_token - tok.min_token, 0) >= 128:
        assert split > 0  # the wide tokenizer really splits characters over ids: the pending-bytes path ran


def test_out_of_range_characters_and_bad_input_are_refused():
    tok = openfast(horizon=30, dim=6)
    # The same ids read against a narrower trained range (max_token 0: no coefficient above 0 was seen) must lose
    # every id holding a character past it, and keep the others.
    narrow = OpenFastProcessor(tok.tokenizer, tok.config, max_token=0)
    cut, full = LengthGrammar.of(narrow, 12), LengthGrammar.of(tok, 12)
    for i in range(tok.vocab.size):
        text = tok.vocab.token_bytes(i).decode("utf-8")
        assert full.allowed(full.start)[i] == (len(text) <= 12)
        assert cut.allowed(cut.start)[i] == (len(text) <= 12 and max(map(ord, text)) + tok.min_token <= 0), i
    state = (12, b"")
    assert not full.allowed(state).any() and full.may_end(state) and not full.may_end((11, b""))
    with pytest.raises(ValueError, match="n_coefficients"):
        LengthGrammar.of(tok, 0)
    with pytest.raises(ValueError, match="coefficients"):
        full.allowed((13, b""))
    with pytest.raises(ValueError, match="not allowed"):
        full.advance(state, 0)
    unknown = OpenFastProcessor(tok.tokenizer, tok.config)
    unknown.max_token = None  # a released vocabulary that does not reveal its range
    with pytest.raises(ValueError, match="trained range"):
        LengthGrammar.of(unknown, 12)
