"""OpenFAST inspection API, normalization, metrics and the decode-failure lab."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dct

from molmoact2.openfast import DecodeError, OpenFastProcessor
from molmoact2.openfast.chunks import chunk_episodes
from molmoact2.openfast.inspect import inspect_chunk
from molmoact2.openfast.lab import apply_edit, failure_report, parse_edit
from molmoact2.openfast.metrics import binning_roundtrip, evaluate
from molmoact2.openfast.normalize import QuantileNormalizer
from molmoact2.openfast.training import fit_on_episodes
from _openfast_data import smooth_chunks, smooth_episode


TRAIN = smooth_chunks(300, seed=1)


@pytest.fixture(scope="module")
def small():
    return OpenFastProcessor.fit(TRAIN, vocab_size=512, scale=10)


@pytest.fixture(scope="module")
def degrees():
    """Raw 'degree' episodes, their stats and a tokenizer fitted on them (every chunk encodable)."""
    eps = [smooth_episode(120, seed=s) for s in range(4)]
    out = fit_on_episodes(eps, 30, scale=10, vocab_size=512, stride=1)
    return eps, out.normalizer, out.processor


@pytest.fixture(scope="module")
def wide():
    return OpenFastProcessor.fit(smooth_chunks(200, seed=2), vocab_size=2048, scale=60)


@pytest.mark.parametrize("which", ["small", "wide"])
def test_every_stage_is_consistent(which, request):
    proc = request.getfixturevalue(which)
    chunk = smooth_chunks(1, seed=21)[0]
    insp = inspect_chunk(proc, chunk)
    assert np.allclose(insp.dct, dct(chunk, axis=0, norm="ortho"))
    assert np.allclose(insp.scaled, insp.dct * proc.scale)
    assert np.array_equal(insp.integers, np.around(insp.scaled))
    assert insp.flat_integers.tolist() == insp.integers.reshape(-1).tolist()
    assert [ord(c) for c in insp.text] == (insp.flat_integers - proc.min_token).tolist()
    assert insp.ids == proc.encode(chunk)[0]
    assert np.array_equal(insp.decoded, proc.decode([insp.ids], 30, 6)[0])
    # pieces tile the byte string of the text without gaps, in order
    assert insp.pieces[0].byte_start == 0
    assert all(a.byte_end == b.byte_start for a, b in zip(insp.pieces, insp.pieces[1:]))
    assert insp.pieces[-1].byte_end == len(insp.text.encode("utf-8"))
    assert insp.pieces[0].coef_start == 0 and insp.pieces[-1].coef_end == 180
    # a piece holding a coefficient's first byte covers that coefficient
    for c, owner in enumerate(insp.piece_of_coefficient.reshape(-1)):
        assert insp.pieces[owner].coef_start <= c < insp.pieces[owner].coef_end
    # a split coefficient shows up as a piece boundary inside a two-byte character
    widths = [len(ch.encode("utf-8")) for ch in insp.text]
    char_starts = set(np.concatenate([[0], np.cumsum(widths)]).tolist())
    for pc in insp.pieces:
        assert pc.splits_coefficient == (pc.byte_start not in char_starts or pc.byte_end not in char_starts)
    if which == "wide":
        assert max(widths) == 2


def test_errors_per_joint_and_comparison_table(small):
    chunk = smooth_chunks(1, seed=22)[0]
    insp = inspect_chunk(small, chunk)
    err = np.abs(insp.decoded - chunk)
    assert [round(j.max_abs, 12) for j in insp.per_joint] == [round(v, 12) for v in err.max(axis=0)]
    assert np.isclose(insp.per_joint[2].mean_rel_pct, err[:, 2].mean() / 2 * 100)
    fast, binning, floats = insp.comparison
    assert fast["tokens"] == len(insp.ids) and binning["tokens"] == floats["tokens"] == 180
    assert binning["tokens_vs_openfast"] == pytest.approx(180 / len(insp.ids))
    assert floats["bits"] == 180 * 32 and binning["bits"] == 180 * 8


def test_inspect_with_a_normalizer_reports_data_units(degrees):
    eps, norm, proc = degrees
    ep = eps[1]
    insp = inspect_chunk(proc, ep[:30], norm)
    j = insp.per_joint[0]
    rng = norm.q99[0] - norm.q01[0]
    assert j.mean_abs_raw == pytest.approx(j.mean_abs * rng / 2, rel=0.2)  # clipping aside, units scale by range/2
    assert np.allclose(insp.raw_actions, ep[:30])


def test_quantile_normalizer_round_trip_and_clip(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(5000, 3)) * [1, 10, 100] + [0, 5, -50]
    norm = QuantileNormalizer.from_data(frames, names=["a", "b", "c"])
    y = norm.normalize(frames)
    assert y.min() >= -1 and y.max() <= 1
    inside = (frames >= norm.q01) & (frames <= norm.q99)
    assert np.allclose(norm.unnormalize(y)[inside], frames[inside])
    assert np.allclose(np.percentile(frames, [1, 99], axis=0), [norm.q01, norm.q99])
    norm.save(tmp_path, source="test")
    assert QuantileNormalizer.load(tmp_path) == norm
    assert QuantileNormalizer.load(tmp_path / "missing") is None
    with pytest.raises(ValueError, match="3 action dims"):
        norm.normalize(np.zeros((4, 2)))
    still = QuantileNormalizer.from_data(np.ones((10, 1)))  # a joint that never moves
    assert np.isfinite(still.normalize(np.ones((3, 1)))).all()


def test_chunking_windows_and_short_episodes():
    eps = [np.arange(70.0).reshape(35, 2), np.zeros((10, 2))]
    c = chunk_episodes(eps, 30, stride=1)
    assert c.shape == (6, 30, 2) and c[5, 0, 0] == 10.0
    assert chunk_episodes(eps, 30).shape == (1, 30, 2)
    with pytest.raises(ValueError, match="at least 40 steps"):
        chunk_episodes(eps, 40)


def test_metrics_match_a_direct_computation(small):
    x = TRAIN[:50]  # chunks the BPE saw: every integer is encodable
    s = evaluate(small, x, batch=16)
    ids = small.encode(x)
    lengths = [len(i) for i in ids]
    rel = np.abs(small.decode(ids, 30, 6) - x) / 2 * 100
    assert s.tokens_mean == pytest.approx(np.mean(lengths)) and s.tokens_max == max(lengths)
    assert s.compression_vs_binning == pytest.approx(180 / np.mean(lengths))
    assert s.mean_rel_error_pct == pytest.approx(rel.mean()) and s.max_rel_error_pct == pytest.approx(rel.max())
    assert np.abs(binning_roundtrip(x) - x).max() <= 1 / 256 + 1e-12


def test_fit_on_episodes_uses_percentile_stats():
    eps = [smooth_episode(200, seed=s) for s in range(3)]
    out = fit_on_episodes(eps, 30, scale=10, vocab_size=512, stride=5)
    assert np.allclose(out.normalizer.q01, np.percentile(np.concatenate(eps), 1, axis=0))
    assert out.train_chunks.shape[1:] == (30, 6) and out.train_chunks.min() >= -1
    assert out.stats.num_chunks == out.train_chunks.shape[0]


def test_edit_helpers():
    assert apply_edit([1, 2, 3], "drop", 1) == [1, 3]
    assert apply_edit([1, 2, 3], "insert", 3, 9) == [1, 2, 3, 9]
    assert apply_edit([1, 2, 3], "edit", 0, 9) == [9, 2, 3]
    assert parse_edit("insert:2:77") == ("insert", 2, 77)
    for bad in ("drop", "edit:1", "swap:1:2", "drop:x"):
        with pytest.raises(ValueError, match="expected an edit"):
            parse_edit(bad)
    with pytest.raises(ValueError, match="position"):
        apply_edit([1, 2], "drop", 2)


def test_failure_report_shows_what_zeros_do_to_an_absolute_joint_robot(degrees):
    eps, norm, small = degrees
    chunk = norm.normalize(eps[2][30:60])
    ids = small.encode(chunk)[0]
    rep = failure_report(small, apply_edit(ids, "drop", len(ids) - 1), chunk, norm)
    assert not rep.decoded_ok and rep.diagnostics is not None and "wrong length" in rep.error_text
    midpoint = (np.asarray(norm.q01) + np.asarray(norm.q99)) / 2
    assert np.allclose(rep.zeros_units, midpoint)  # a constant pose at mid-range, for every step
    assert np.allclose(rep.max_deviation("zeros"), np.abs(midpoint - rep.truth).max(axis=0))
    ok = failure_report(small, ids, chunk, norm)
    assert ok.decoded_ok and ok.diagnostics is None
    with pytest.raises(DecodeError):
        small.decode([apply_edit(ids, "edit", 0, 10**6)], 30, 6)


def test_in_range_values_never_seen_in_training_are_caught(small):
    """The reference's raw initial alphabet chr(0..N) does not contain the byte SYMBOLS of control
    characters (chr(0..32) -> U+0100..), so an in-range integer never seen in training is silently
    dropped by the reference BPE. Our encode refuses it."""
    from molmoact2.openfast import EncodeRangeError

    missing = [v for v in range(small.min_token, small.max_token + 1)
               if not small.vocab.encodable(v - small.min_token)]
    assert missing, "every in-range value is encodable: this test needs a gap"
    v = missing[0]
    chunk = np.zeros((1, 30, 6))
    chunk[0, :, 0] = v / small.scale / np.sqrt(30)  # DC coefficient of a constant c is c * sqrt(T)
    assert small.encode_detailed(chunk, on_out_of_range="reference").integers[0, 0, 0] == v
    with pytest.raises(EncodeRangeError):
        small.encode(chunk)
    ref_ids = small.encode(chunk, on_out_of_range="reference")
    with pytest.raises(DecodeError, match="wrong length"):
        small.decode(ref_ids, 30, 6)


def test_explorer_tables_and_figures_for_the_app(degrees):
    from molmoact2.openfast.explorer import explore, joint_table, lab_table, stats_table
    from molmoact2.openfast.sources import ActionSource
    from molmoact2.viz import openfast_plots as P

    eps, _, _ = degrees
    src = ActionSource(eps, fps=30.0, names=["a", "b", "c", "d", "e", "f"])
    ex = explore(src, scale=10, vocab_size=512, episode=2, start=40)
    assert ex.horizon == 30 and not ex.fps_assumed and ex.insp.raw_actions is not None
    headers, rows = stats_table(ex)
    assert rows[0][1] == ex.insp.num_tokens and rows[1][1] == 180
    assert [r[0] for r in joint_table(ex)[1]] == ["a", "b", "c", "d", "e", "f"]
    ids = ex.insp.ids
    rep = failure_report(ex.outcome.processor, ids[1:], ex.insp.actions, ex.outcome.normalizer)
    assert len(lab_table(rep, ex.names)[1]) == 6
    figs = [P.actions_figure(ex.insp), P.dct_figure(ex.insp), P.integers_figure(ex.insp),
            P.tokens_figure(ex.insp), P.decoded_figure(ex.insp), P.lab_figure(rep, ex.names)]
    assert all(len(f.data) > 0 for f in figs)
    assert np.array_equal(figs[3].data[0].z, ex.insp.piece_of_coefficient % len(P.PALETTE))
    with pytest.raises(ValueError, match="start must be in"):
        explore(src, episode=0, start=500, outcome=ex.outcome)
