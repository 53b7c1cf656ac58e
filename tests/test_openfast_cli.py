"""`molmoact2 fast fit | encode | decode | inspect` on .npy, .csv and a small LeRobot v3.0 dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from molmoact2.cli import main
from molmoact2.openfast import OpenFastProcessor
from molmoact2.openfast.normalize import QuantileNormalizer
from molmoact2.openfast.sources import load_actions
from _openfast_data import smooth_episode

NAMES = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos"]


def write_lerobot(root, episodes, fps=30):
    """A minimal LeRobot v3.0 dataset: meta/info.json + one data parquet with `action` and indices."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    info = {"codebase_version": "v3.0", "fps": fps, "robot_type": "so101_follower",
            "features": {"action": {"dtype": "float32", "shape": [6], "names": NAMES},
                         "episode_index": {"dtype": "int64", "shape": [1], "names": None}}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    actions = np.concatenate(episodes).astype(np.float32)
    ep_index = np.concatenate([np.full(len(e), i) for i, e in enumerate(episodes)])
    table = pa.table({"action": pa.array(list(actions), type=pa.list_(pa.float32())),
                      "episode_index": pa.array(ep_index, type=pa.int64()),
                      "frame_index": pa.array(np.concatenate([np.arange(len(e)) for e in episodes]))})
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")
    return actions


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot") / "so101_fake"
    eps = [smooth_episode(150, seed=s) for s in range(3)]
    write_lerobot(root, eps)
    return root, eps


@pytest.fixture(scope="module")
def tokenizer_dir(dataset, tmp_path_factory):
    root, _ = dataset
    out = tmp_path_factory.mktemp("tok") / "fast"
    assert main(["fast", "fit", str(root), "--out", str(out), "--scale", "10", "--vocab-size", "512"]) == 0
    return out


def test_lerobot_reader_splits_episodes_and_reads_fps(dataset):
    root, eps = dataset
    src = load_actions(root)
    assert src.fps == 30 and src.names == NAMES and len(src.episodes) == 3
    assert np.allclose(src.episodes[1], eps[1].astype(np.float32))


def test_fit_writes_tokenizer_stats_and_report(tokenizer_dir, dataset, capsys):
    root, eps = dataset
    proc = OpenFastProcessor.load(tokenizer_dir)
    assert (proc.config.time_horizon, proc.config.action_dim) == (30, 6)  # 1 s at 30 fps
    norm = QuantileNormalizer.load(tokenizer_dir)
    assert norm.names == tuple(NAMES)
    assert np.allclose(norm.q01, np.percentile(np.concatenate(eps).astype(np.float32), 1, axis=0), atol=1e-4)
    info = json.loads((tokenizer_dir / "openfast_fit.json").read_text())
    assert info["train_stats"]["num_chunks"] == 3 * (150 - 30 + 1)
    assert info["command"] == f"molmoact2 fast fit {root} --out {tokenizer_dir} --scale 10 --vocab-size 512 --stride 1"


def test_encode_then_decode_round_trips_in_data_units(tokenizer_dir, dataset, tmp_path, capsys):
    root, eps = dataset
    ids_path, out_npy = tmp_path / "ids.json", tmp_path / "actions.npy"
    assert main(["fast", "encode", str(root), "--tokenizer", str(tokenizer_dir), "--out", str(ids_path)]) == 0
    payload = json.loads(ids_path.read_text())
    assert payload["time_horizon"] == 30 and len(payload["chunks"]) == 3 * 5
    assert main(["fast", "decode", str(ids_path), "--tokenizer", str(tokenizer_dir), "--out", str(out_npy)]) == 0
    decoded = np.load(out_npy)
    first = payload["chunks"][6]  # episode 1, steps 30..59
    truth = eps[first["episode"]][first["start"]:first["start"] + 30]
    rng = np.ptp(np.concatenate(eps), axis=0)
    assert (np.abs(decoded[6] - truth).mean(axis=0) / rng < 0.02).all()
    assert "[15, 30, 6]" in capsys.readouterr().out


def test_npy_and_csv_inputs(tokenizer_dir, dataset, tmp_path, capsys):
    _, eps = dataset
    np.save(tmp_path / "traj.npy", eps[0])
    header = ",".join(NAMES)
    np.savetxt(tmp_path / "traj.csv", eps[0], delimiter=",", header=header, comments="")
    for name in ("traj.npy", "traj.csv"):
        assert main(["fast", "encode", str(tmp_path / name), "--tokenizer", str(tokenizer_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("5 chunks of 30 steps") == 2
    src = load_actions(tmp_path / "traj.csv")
    assert src.names == NAMES and np.allclose(src.episodes[0], eps[0])


def test_inspect_prints_every_stage_and_the_failure_lab(tokenizer_dir, dataset, capsys):
    root, _ = dataset
    assert main(["fast", "inspect", str(root), "--tokenizer", str(tokenizer_dir), "--episode", "1",
                 "--start", "12", "--corrupt", "edit:0:999999"]) == 0
    out = capsys.readouterr().out
    for stage in ("1. normalized", "2. DCT", "3. x scale", "4. minus min_token", "5. BPE", "6. decoded",
                  "7. size", "8. decode-failure lab", "invalid id", "zeros cmd"):
        assert stage in out, stage


def test_decode_failure_exits_3_with_diagnostics(tokenizer_dir, capsys):
    proc = OpenFastProcessor.load(tokenizer_dir)
    ids = proc.encode(np.zeros((1, 30, 6)))[0]
    spec = ",".join(map(str, ids[:-1]))
    assert main(["fast", "decode", spec, "--tokenizer", str(tokenizer_dir)]) == 3
    err = capsys.readouterr().err
    assert "expected 180 DCT coefficients" in err and "no actions produced" in err
    assert main(["fast", "decode", spec, "--tokenizer", str(tokenizer_dir), "--on-error", "zeros"]) == 0
    captured = capsys.readouterr()
    assert "FAILED to decode" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["fast", "encode", "/nonexistent/x.npy", "--tokenizer", "{tok}"], "no such file"),
    (["fast", "decode", "1,2", "--tokenizer", "/nonexistent"], "does not exist"),
    (["fast", "fit", "{tmp}/bad.txt", "--out", "{tmp}/o"], "expected a .npy, a .csv"),
    (["fast", "fit", "{tmp}/t.npy", "--out", "{tmp}/o"], "--horizon"),
    (["fast", "decode", "a,b", "--tokenizer", "{tok}"], "comma-separated integers"),
])
def test_clear_errors(argv, message, tmp_path, tokenizer_dir, capsys):
    (tmp_path / "bad.txt").write_text("hello")
    np.save(tmp_path / "t.npy", np.zeros((40, 6)))
    argv = [a.format(tmp=tmp_path, tok=tokenizer_dir) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


ASSET = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "openfast_so101_sim"


@pytest.mark.skipif(not (ASSET / "tokenizer.json").is_file(), reason="asset not built in this checkout")
def test_shipped_asset_round_trips_its_own_demos():
    from molmoact2.commands.fast import DEFAULT_TOKENIZER
    from molmoact2.openfast.chunks import chunk_episodes
    from molmoact2.openfast.metrics import evaluate

    assert DEFAULT_TOKENIZER == ASSET
    proc = OpenFastProcessor.load(ASSET)
    norm = QuantileNormalizer.load(ASSET)
    assert (proc.config.time_horizon, proc.config.action_dim) == (30, 6) and proc.max_token is not None
    src = load_actions(ASSET / "demo_actions.npz")
    assert src.fps == 30 and src.names == list(norm.names)
    chunks = chunk_episodes([norm.normalize(e) for e in src.episodes], 30, 10)
    stats = evaluate(proc, chunks)  # every training chunk must encode and decode
    assert stats.mean_rel_error_pct < 1.0 and stats.compression_vs_binning > 5
    readme = (ASSET / "README.md").read_text()
    assert "scripts/build_openfast_asset.py" in readme


def test_npz_episodes_round_trip(tmp_path):
    from molmoact2.openfast.sources import save_npz

    eps = [smooth_episode(40, seed=1), smooth_episode(55, seed=2)]
    save_npz(tmp_path / "d.npz", eps, fps=15, names=NAMES)
    src = load_actions(tmp_path / "d.npz")
    assert src.fps == 15 and src.names == NAMES and [len(e) for e in src.episodes] == [40, 55]
    assert np.allclose(src.episodes[1], eps[1].astype(np.float32))


def test_prechunked_normalized_npy_with_no_normalize(tmp_path, capsys):
    from _openfast_data import smooth_chunks

    chunks = smooth_chunks(120, horizon=20, dims=3, seed=4)
    np.save(tmp_path / "chunks.npy", chunks)
    out = tmp_path / "tok"
    assert main(["fast", "fit", str(tmp_path / "chunks.npy"), "--out", str(out), "--no-normalize",
                 "--vocab-size", "512"]) == 0
    assert not (out / "normalization.json").exists()
    proc = OpenFastProcessor.load(out)
    assert (proc.config.time_horizon, proc.config.action_dim) == (20, 3)
    ids = tmp_path / "ids.json"
    assert main(["fast", "encode", str(tmp_path / "chunks.npy"), "--tokenizer", str(out), "--no-normalize",
                 "--out", str(ids)]) == 0
    assert json.loads(ids.read_text())["chunks"][5]["ids"] == proc.encode(chunks[5])[0]
    assert main(["fast", "encode", str(tmp_path / "chunks.npy"), "--tokenizer", str(out)]) == 2
    assert "no normalization.json" in capsys.readouterr().err
