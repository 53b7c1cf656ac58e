"""OpenFAST core: exact compatibility with the reference algorithm, round trips, never-silent failures.

The reference here is written from the documented steps (compat.md §2.3-2.5), independently of
`molmoact2.openfast`: `tokenizers.Tokenizer.from_file` + scipy dct/idct + chr/ord.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.fft import dct, idct

from molmoact2.openfast import DecodeError, DecodeResult, EncodeRangeError, OpenFastProcessor
from molmoact2.openfast.bpe import byte_symbols
from _openfast_data import smooth_chunks


# ---------------------------------------------------------------- independent reference
class ReferenceFast:
    """The documented reference algorithm, step by step, reading the same files."""

    def __init__(self, directory: Path):
        from tokenizers import Tokenizer

        cfg = json.loads((directory / "processor_config.json").read_text())
        self.scale = cfg.get("scale", 10)
        self.min_token = cfg.get("min_token", 0)
        self.tok = Tokenizer.from_file(str(directory / "tokenizer.json"))

    def encode(self, chunk_btd: np.ndarray) -> list[list[int]]:
        coeff = np.around(dct(chunk_btd, axis=1, norm="ortho") * self.scale)
        out = []
        for elem in coeff:
            s = "".join(map(chr, np.maximum(elem.flatten() - self.min_token, 0).astype(int)))
            out.append(self.tok.encode(s).ids)
        return out

    def decode(self, ids: list[list[int]], t: int, d: int) -> np.ndarray:
        outs = []
        for seq in ids:
            text = self.tok.decode(seq)
            c = (np.array(list(map(ord, text))) + self.min_token).reshape(-1, d)
            assert c.shape == (t, d)
            outs.append(idct(c / self.scale, axis=0, norm="ortho"))
        return np.stack(outs)

    @staticmethod
    def fit_tokenizer_json(chunks, scale, vocab_size) -> dict:
        """The reference `fit`: ByteLevelBPETokenizer() + BpeTrainer, inner train_from_iterator."""
        from tokenizers import ByteLevelBPETokenizer
        from tokenizers.trainers import BpeTrainer

        dcts = [dct(a, axis=0, norm="ortho").flatten() for a in chunks]
        allq = np.around(np.concatenate(dcts) * scale)
        lo, hi = int(allq.min()), int(allq.max())
        strings = ["".join(map(chr, (np.around(c * scale) - lo).astype(int))) for c in dcts]
        bpe = ByteLevelBPETokenizer()
        trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
                             initial_alphabet=[chr(i) for i in range(hi - lo + 1)], max_token_length=10000)
        bpe._tokenizer.train_from_iterator(iter(strings), trainer=trainer)
        return json.loads(bpe._tokenizer.to_str()), lo


@pytest.fixture(scope="module")
def train():
    return smooth_chunks(400, seed=1)


@pytest.fixture(scope="module")
def fitted(train, tmp_path_factory):
    proc = OpenFastProcessor.fit(train, vocab_size=512, scale=10)
    d = tmp_path_factory.mktemp("fast") / "tok"
    proc.save(d)
    return proc, d


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A tokenizer whose integers reach past 128 (two-byte characters), like FAST+ (min_token=-354)."""
    proc = OpenFastProcessor.fit(smooth_chunks(300, seed=2), vocab_size=2048, scale=60)
    d = tmp_path_factory.mktemp("fast") / "wide"
    proc.save(d)
    return proc, d


# ---------------------------------------------------------------- files and compatibility
def test_saved_layout_matches_released_processor_files(fitted):
    _, d = fitted
    names = sorted(p.name for p in d.iterdir())
    assert {"processor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= set(names)
    cfg = json.loads((d / "processor_config.json").read_text())
    assert sorted(cfg) == ["action_dim", "auto_map", "min_token", "processor_class", "scale", "time_horizon",
                           "vocab_size"]
    assert cfg["auto_map"] == {"AutoProcessor": "processing_action_tokenizer.UniversalActionProcessor"}
    assert (cfg["time_horizon"], cfg["action_dim"], cfg["scale"]) == (30, 6, 10)
    tcfg = json.loads((d / "tokenizer_config.json").read_text())
    assert tcfg["clean_up_tokenization_spaces"] is False
    assert tcfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (d / "special_tokens_map.json").read_bytes() == b"{}\n"  # 3 bytes like PI's
    tj = json.loads((d / "tokenizer.json").read_text())
    assert tj["normalizer"] is None and tj["added_tokens"] == []
    assert tj["pre_tokenizer"] == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                   "use_regex": True}
    assert tj["post_processor"]["type"] == "ByteLevel" and tj["post_processor"]["trim_offsets"] is False
    assert tj["decoder"]["type"] == "ByteLevel"
    assert tj["model"]["type"] == "BPE" and tj["model"]["unk_token"] is None


def test_processor_config_with_fast_plus_values_is_253_bytes(tmp_path, fitted):
    """compat.md §2.1: PI's FAST+ values serialise to exactly 253 bytes with our writer."""
    from molmoact2.openfast.processor import OpenFastConfig

    proc, _ = fitted
    plus = OpenFastProcessor(proc.tokenizer, OpenFastConfig(scale=10, vocab_size=2048, min_token=-354))
    plus.save(tmp_path)
    assert len((tmp_path / "processor_config.json").read_bytes()) == 253


def test_fit_trains_the_same_bpe_as_the_reference_fit(train, fitted):
    proc, d = fitted
    ref, lo = ReferenceFast.fit_tokenizer_json(list(train), scale=10, vocab_size=512)
    ours = json.loads((d / "tokenizer.json").read_text())
    assert proc.min_token == lo
    assert ours["model"]["vocab"] == ref["model"]["vocab"]
    assert ours["model"]["merges"] == ref["model"]["merges"]
    for key in ("pre_tokenizer", "post_processor", "decoder", "normalizer"):
        assert ours[key] == ref[key]


@pytest.mark.parametrize("which", ["fitted", "wide"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ids_and_actions_equal_the_reference_algorithm(which, dtype, request):
    proc, d = request.getfixturevalue(which)
    loaded = OpenFastProcessor.load(d)
    ref = ReferenceFast(d)
    x = smooth_chunks(64, seed=7).astype(dtype)
    ids = loaded.encode(x)
    assert ids == ref.encode(x)
    assert ids == proc.encode(x)
    ours = loaded.decode(ids, 30, 6)
    theirs = ref.decode(ids, 30, 6)
    assert ours.dtype == np.float64 and np.array_equal(ours, theirs)
    assert np.abs(ours - x).max() < 0.5 / proc.scale * np.sqrt(30 * 6)  # bounded by the rounding


def test_two_byte_characters_are_exercised(wide):
    proc, _ = wide
    enc = proc.encode_detailed(smooth_chunks(8, seed=3))
    assert (enc.code_points >= 128).any()  # else the "wide" tokenizer would not test UTF-8 splitting


def test_transformers_loader_reads_our_directory_like_lerobot(fitted):
    """LeRobot's from_pretrained_local: PreTrainedTokenizerFast.from_pretrained(<root>)."""
    from transformers import PreTrainedTokenizerFast

    proc, d = fitted
    hf = PreTrainedTokenizerFast.from_pretrained(str(d))
    x = smooth_chunks(8, seed=11)
    enc = proc.encode_detailed(x)
    for row, ids in zip(enc.code_points, enc.ids):
        text = "".join(map(chr, row))
        assert hf(text)["input_ids"] == ids
        assert hf.decode(ids) == text


def test_released_layout_loads_without_running_remote_code(tmp_path, wide):
    proc, d = wide
    repo = tmp_path / "fast_plus_like"
    repo.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (repo / f).write_bytes((d / f).read_bytes())
    cfg = {"action_dim": None, "auto_map": {"AutoProcessor": "processing_action_tokenizer.UniversalActionProcessor"},
           "min_token": proc.min_token, "processor_class": "UniversalActionProcessor", "scale": 60,
           "time_horizon": None, "vocab_size": 2048}
    (repo / "processor_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    marker = tmp_path / "remote_code_ran"
    (repo / "processing_action_tokenizer.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    loaded = OpenFastProcessor.load(repo)
    assert not marker.exists()
    assert loaded.config.time_horizon is None and loaded.max_token == proc.max_token  # inferred from the vocab
    x = smooth_chunks(4, seed=5)
    assert loaded.encode(x) == ReferenceFast(repo).encode(x)
    with pytest.raises(ValueError, match="never taken from a previous encode"):
        loaded.decode(loaded.encode(x))  # no T/D in the config and no caching from encode
    assert np.array_equal(loaded.decode(loaded.encode(x), 30, 6), ReferenceFast(repo).decode(loaded.encode(x), 30, 6))


def test_older_tokenizer_json_with_string_merges_gives_the_same_ids(tmp_path, wide):
    """Older tokenizers versions (e.g. PI's Jan-2025 upload) may write merges as "a b" strings and omit newer
    model keys; byte-level symbols never contain a space, so both forms are the same BPE."""
    proc, d = wide
    tj = json.loads((d / "tokenizer.json").read_text())
    tj["model"]["merges"] = [" ".join(pair) for pair in tj["model"]["merges"]]
    for key in ("ignore_merges", "byte_fallback", "fuse_unk"):
        tj["model"].pop(key, None)
    for f in ("processor_config.json", "tokenizer_config.json"):
        (tmp_path / f).write_bytes((d / f).read_bytes())
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    old = OpenFastProcessor.load(tmp_path)
    x = smooth_chunks(16, seed=17)
    assert old.encode(x) == proc.encode(x) == ReferenceFast(tmp_path).encode(x)


def test_transformers5_subfolder_layout_is_found(tmp_path, fitted):
    _, d = fitted
    (tmp_path / "bpe_tokenizer").mkdir()
    (tmp_path / "bpe_tokenizer" / "tokenizer.json").write_bytes((d / "tokenizer.json").read_bytes())
    (tmp_path / "processor_config.json").write_bytes((d / "processor_config.json").read_bytes())
    loaded = OpenFastProcessor.load(tmp_path)
    assert any("bpe_tokenizer" in n for n in loaded.notes)
    x = smooth_chunks(2, seed=9)
    assert loaded.encode(x) == OpenFastProcessor.load(d).encode(x)


def test_load_refuses_what_is_not_a_fast_tokenizer(tmp_path, fitted):
    _, d = fitted
    with pytest.raises(FileNotFoundError, match="not a directory"):
        OpenFastProcessor.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        OpenFastProcessor.load(tmp_path)
    tj = json.loads((d / "tokenizer.json").read_text())
    tj["decoder"] = {"type": "WordPiece", "prefix": "##", "cleanup": True}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ValueError, match="ByteLevel decoder"):
        OpenFastProcessor.load(tmp_path)


def test_gpt2_byte_symbols_match_the_tokenizers_library():
    from tokenizers.pre_tokenizers import ByteLevel

    table = byte_symbols()
    assert len(set(table)) == 256 and set(table) == set(ByteLevel.alphabet())
    pre = ByteLevel(add_prefix_space=False, use_regex=False)
    for b in range(128):
        assert pre.pre_tokenize_str(chr(b))[0][0] == table[b]
    assert pre.pre_tokenize_str(chr(200))[0][0] == table[0xC3] + table[0x88]  # 'Ã' 'Ī' (compat.md §2.6)


# ---------------------------------------------------------------- algorithm details
def test_rounding_is_half_to_even_and_order_is_frequency_major(fitted):
    from molmoact2.openfast.codec import quantize
    from molmoact2.openfast.inspect import inspect_chunk

    proc, _ = fitted
    # Exact binary halves (x4 -> 0.5, 1.5, -0.5, 2.5): half to even, not half away from zero.
    assert quantize(np.array([0.125, 0.375, -0.125, 0.625]), 4).tolist() == [0, 2, 0, 2]
    # float32 stays float32 through the scale (a np.float64 scale would promote and could re-round).
    assert quantize(np.array([0.5], dtype=np.float32), np.float64(3)).tolist() == \
        np.around(np.array([0.5], dtype=np.float32) * 3).astype(int).tolist()

    chunk = smooth_chunks(1, horizon=4, dims=3, seed=4)[0]
    insp = inspect_chunk(proc, chunk, on_out_of_range="reference")
    expected = np.around(dct(chunk, axis=0, norm="ortho") * 10)
    assert insp.flat_integers.tolist() == [int(expected[t, d]) for t in range(4) for d in range(3)]


def test_encode_accepts_TD_and_refuses_bad_input(fitted):
    proc, _ = fitted
    x = smooth_chunks(1, seed=2)[0]
    assert proc.encode(x) == proc.encode(x[None])
    for bad, msg in [(np.zeros(6), r"\[B, T, D\]"), (np.zeros((1, 2, 30, 6)), r"\[B, T, D\]"),
                     (np.array([[["a"]]]), "numeric"), (np.full((30, 6), np.nan), "NaN")]:
        with pytest.raises(ValueError, match=msg):
            proc.encode(bad)


def test_out_of_range_encode_raises_unless_reference_mode(fitted):
    proc, d = fitted
    x = smooth_chunks(3, seed=3)
    x[1] = -5.0  # far outside the [-1, 1] the tokenizer was fitted on: DC integer << min_token
    with pytest.raises(EncodeRangeError, match="clip") as e:
        proc.encode(x)
    assert e.value.positions and all(p[0] == 1 for p in e.value.positions)
    enc = proc.encode_detailed(x, on_out_of_range="reference")
    assert enc.flagged and enc.clipped[1].any() and not enc.clipped[0].any()
    assert enc.ids == ReferenceFast(d).encode(x)


def test_fit_refuses_a_range_wider_than_the_vocabulary():
    with pytest.raises(ValueError, match="vocab_size"):
        OpenFastProcessor.fit(smooth_chunks(20, seed=1) * 50, vocab_size=256, scale=10)
    with pytest.raises(ValueError, match="NaN"):
        OpenFastProcessor.fit([np.full((30, 6), np.nan)])


# ---------------------------------------------------------------- decode failures
def test_decode_needs_an_explicit_shape_and_never_caches_it(fitted):
    proc, d = fitted
    from molmoact2.openfast.processor import OpenFastConfig

    bare = OpenFastProcessor(proc.tokenizer, OpenFastConfig(scale=10, min_token=proc.min_token))
    ids = bare.encode(smooth_chunks(2, seed=1))
    with pytest.raises(ValueError, match="time_horizon and action_dim"):
        bare.decode(ids)
    assert bare.decode(ids, 30, 6).shape == (2, 30, 6)
    with pytest.raises(ValueError, match="time_horizon and action_dim"):
        bare.decode(ids)  # the explicit values did not become sticky either
    with pytest.raises(ValueError, match="positive int"):
        bare.decode(ids, 0, 6)


def test_dropped_last_id_raises_with_diagnostics_not_zeros(fitted):
    proc, _ = fitted
    x = smooth_chunks(3, seed=5)
    ids = proc.encode(x)
    ids[1] = ids[1][:-1]
    with pytest.raises(DecodeError) as e:
        proc.decode(ids)
    (diag,) = e.value.diagnostics
    assert diag.sequence_index == 1 and diag.expected_coefficients == 180
    assert diag.got_coefficients < 180 and not diag.ok
    assert "wrong length" in str(e.value)
    # good sequences are decoded in the partial array, the failed one is NaN (no trustworthy prefix)
    assert np.allclose(e.value.partial[0], proc.decode([ids[0]])[0])
    assert np.isnan(e.value.partial[1]).all()


def test_invalid_ids_are_named_with_positions_and_a_partial_reconstruction(fitted):
    proc, _ = fitted
    x = smooth_chunks(1, seed=6)
    ids = proc.encode(x)[0]
    bad = ids[:4] + [10**6] + ids[4:] + [-3, 2.5]
    with pytest.raises(DecodeError) as e:
        proc.decode([bad])
    diag = e.value.diagnostics[0]
    assert [(b.position, b.token_id) for b in diag.bad_ids] == [(4, 10**6), (len(bad) - 2, -3), (len(bad) - 1, 2.5)]
    assert diag.diverged_at_token == 4
    n_before = len(proc.tokenizer.decode(ids[:4]))
    assert diag.diverged_at_coefficient == n_before
    if n_before >= 6:
        assert diag.partial_actions is not None and diag.received_mask.sum() == n_before


def test_split_multibyte_character_is_reported_as_invalid_utf8(wide):
    proc, _ = wide
    x = smooth_chunks(1, seed=8)
    ids = proc.encode(x)[0]
    lead = proc.vocab.token_to_id.get(byte_symbols()[0xC3])  # a lone UTF-8 lead byte
    assert lead is not None
    bad = [lead] + ids
    with pytest.raises(DecodeError) as e:
        proc.decode([bad])
    diag = e.value.diagnostics[0]
    assert diag.bad_bytes and diag.bad_bytes[0].token_position == 0
    assert "invalid UTF-8" in str(e.value)


def test_empty_sequence_is_an_error(fitted):
    proc, _ = fitted
    with pytest.raises(DecodeError, match="0 coefficients decoded, 180 expected"):
        proc.decode([[]])


def test_zero_fallback_only_on_request_and_flagged(fitted):
    proc, _ = fitted
    x = smooth_chunks(2, seed=12)
    ids = proc.encode(x)
    ids[0] = ids[0][:-1]
    res = proc.decode(ids, on_error="zeros")
    assert isinstance(res, DecodeResult) and not isinstance(res, np.ndarray)
    assert res.flagged and res.failed == [0] and res.fallback_used == [0]
    assert np.array_equal(res.actions[0], np.zeros((30, 6)))
    assert np.allclose(res.actions[1], proc.decode([ids[1]])[0])
    relaxed = proc.decode(ids, on_error="relaxed")
    assert relaxed.flagged and not np.allclose(relaxed.actions[0], 0)
    with pytest.raises(ValueError, match="on_error"):
        proc.decode(ids, on_error="ignore")


def test_batch_decode_is_per_sequence_and_encode_matches_one_by_one(fitted):
    proc, _ = fitted
    x = smooth_chunks(20, seed=13)
    batch = proc.encode(x)
    assert batch == [proc.encode(c)[0] for c in x]
    assert np.array_equal(proc.decode(batch), np.concatenate([proc.decode([b]) for b in batch]))
    assert np.array_equal(proc.decode(batch[3]), proc.decode([batch[3]]))  # a flat list = one sequence
