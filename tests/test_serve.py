"""Our /act client against our /act server on 127.0.0.1 (real uvicorn, real HTTP), in every schema.

The served model is the tiny checkpoint loaded through the real-checkpoint backend (HFCheckpointPolicy).
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import json_numpy
import numpy as np
import pytest

from fixtures.tiny_checkpoint import build_tiny_checkpoint
from molmoact2.models.act_protocol import SCHEMAS, build_request
from molmoact2.models.base import CameraFrame, Observation
from molmoact2.models.hf import HFCheckpointPolicy
from molmoact2.models.registry import load_policy
from molmoact2.models.remote import RemoteError, RemotePolicy
from molmoact2.serve.app import ServerThread, build_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("srv") / f"tiny_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def servers(ckpt):
    running = {}
    for name, schema in SCHEMAS.items():
        policy = HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=schema.norm_tag, depth_reasoning=True,
                                    seed=0)
        app = build_app(policy, schema, max_body_bytes=2 * 2**20)
        running[name] = (ServerThread(app).start(), app, policy)
    yield running
    for server, _, _ in running.values():
        server.stop()


def _obs(schema_name: str, h: int = 24, w: int = 32, seed: int = 0) -> Observation:
    schema = SCHEMAS[schema_name]
    rng = np.random.default_rng(seed)
    cams = {k: CameraFrame(rgb=rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for k in schema.camera_keys}
    return Observation(cameras=cams, state=np.linspace(-0.3, 0.3, schema.state_dim).astype(np.float32),
                       instruction="put the cube in the box")


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
def test_client_server_round_trip(servers, schema_name):
    server, app, policy = servers[schema_name]
    schema = SCHEMAS[schema_name]
    client = RemotePolicy(server.url)  # schema "auto": read from the health JSON's norm_tag
    info = client.health()
    assert info["status"] == "ok" and info["norm_tag"] == schema.norm_tag and client.schema is schema
    step = client.predict(_obs(schema_name))
    horizon = policy.meta["n_action_steps"]
    assert step.actions.shape == (horizon, schema.state_dim) and step.actions.dtype == np.float32
    assert step.backend == "remote" and step.info["schema"] == schema_name and step.info["attempts"] == 1
    assert {"round_trip_ms", "server_dt_ms", "network_ms", "server_predict_action_ms"} <= set(step.timings_ms)
    assert step.timings_ms["round_trip_ms"] >= step.timings_ms["server_dt_ms"] > 0
    # The extras: depth codes and the MolmoThink update mask (first step of the episode: all re-predicted).
    assert step.depth_bins.shape == (100,) and step.depth_update_mask.all()
    # The same observation again: the server carried the depth cache, so nothing is re-predicted.
    again = client.predict(_obs(schema_name))
    assert not again.depth_update_mask.any()
    np.testing.assert_array_equal(again.depth_bins, step.depth_bins)
    # A new episode resets the server-side cache (episode_start).
    client.reset()
    assert client.predict(_obs(schema_name)).depth_update_mask.all()
    # Same actions as calling the backend in-process with the same seed state.
    policy.reset()
    np.testing.assert_allclose(policy.predict(_obs(schema_name)).actions, step.actions, atol=1e-6)


def test_official_client_style_requests(servers):
    """What the official clients do: `requests` + json_numpy bodies; YAM's client also sends
    `normalization_tag`, `timestamp`, and by default base64 JPEGs in `images_jpeg`."""
    import requests
    from PIL import Image

    server, _, _ = servers["yam"]
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (36, 64, 3), dtype=np.uint8) for _ in range(3)]
    state = np.zeros(14, np.float32)
    with requests.Session() as http:
        health = http.get(server.url + "/act", timeout=5).json()
        assert health["num_cameras"] == 3 and health["state_dim"] == 14 and health["norm_tag"] == "yam_dual_molmoact2"
        payload = {"left_cam": imgs[1], "top_cam": imgs[0], "right_cam": imgs[2], "timestamp": time.time(),
                   "instruction": "fold the towel", "state": state, "normalization_tag": "yam_dual_molmoact2"}
        r = http.post(server.url + "/act", headers={"Content-Type": "application/json"},
                      data=json_numpy.dumps(payload), timeout=10)
        assert r.status_code == 200, r.text
        reply = json_numpy.loads(r.text)
        assert reply["actions"].shape == (30, 14) and reply["actions"].dtype == np.float32 and reply["dt_ms"] > 0

        def jpg(a):
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="JPEG", quality=85)
            return base64.b64encode(buf.getvalue()).decode("ascii")

        payload = {"images_jpeg": {"left": jpg(imgs[1]), "top": jpg(imgs[0]), "right": jpg(imgs[2])},
                   "timestamp": time.time(), "instruction": "fold the towel", "state": state.tolist(),
                   "normalization_tag": "yam_dual_molmoact2"}
        r = http.post(server.url + "/act", headers={"Content-Type": "application/json"},
                      data=json_numpy.dumps(payload), timeout=10)
        assert r.status_code == 200, r.text
        assert json_numpy.loads(r.text)["actions"].shape == (30, 14)
        # A DROID-style client with the wrong norm tag is told so.
        payload["normalization_tag"] = "franka_droid"
        r = http.post(server.url + "/act", data=json_numpy.dumps(payload), timeout=10)
        assert r.status_code == 400 and "yam_dual_molmoact2" in r.json()["error"]
        assert http.get(server.url + "/healthz", timeout=5).json()["status"] == "ok"


def test_client_errors(servers):
    server, _, _ = servers["droid"]
    client = RemotePolicy(server.url + "/act/", schema="droid")  # a trailing /act is accepted
    with pytest.raises(ValueError, match=r"expects a raw state of shape \(8,\)"):
        client.predict(_obs("so101"))
    obs = _obs("droid")
    three = Observation(cameras={**obs.cameras, "extra": obs.cameras["wrist"]}, state=obs.state,
                        instruction=obs.instruction)
    with pytest.raises(ValueError, match="sends 2 cameras"):
        client.predict(three)
    wrong = RemotePolicy(server.url, schema="yam")
    with pytest.raises(RemoteError, match="serves norm tag 'franka_droid'"):
        wrong.health()
    with pytest.raises(ValueError, match="http"):
        RemotePolicy("gpu-box:8000")
    # A schema-valid request the server rejects (4xx) is not retried and shows the server's message.
    big = RemotePolicy(server.url, schema="droid", retries=3)
    huge = Observation(cameras={k: CameraFrame(rgb=np.zeros((1200, 1200, 3), np.uint8)) for k in ("external", "wrist")},
                       state=obs.state, instruction="x")
    with pytest.raises(RemoteError, match="413") as err:
        big.predict(huge)
    assert err.value.status == 413


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_check_retries_and_timeouts():
    port = _free_port()  # nothing listens here
    client = RemotePolicy(f"http://127.0.0.1:{port}", schema="droid", retries=2, backoff_s=0.01)
    with pytest.raises(RemoteError, match="cannot reach"):
        client.predict(_obs("droid"))
    # Skip the health check to exercise the bounded retries of the POST itself.
    client = RemotePolicy(f"http://127.0.0.1:{port}", schema="droid", retries=2, backoff_s=0.01, health_check=False)
    with pytest.raises(RemoteError, match="after 3 attempt"):
        client.predict(_obs("droid"))
    # A server that accepts the connection and never answers: the timeout fires, retries stay bounded.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        client = RemotePolicy(f"http://127.0.0.1:{silent.getsockname()[1]}", schema="droid", timeout_s=0.3,
                              retries=1, backoff_s=0.01, health_check=False)
        t0 = time.perf_counter()
        with pytest.raises(RemoteError, match="timed out"):
            client.predict(_obs("droid"))
        assert time.perf_counter() - t0 < 5
    finally:
        silent.close()


def _bad_payloads(good: dict) -> list[tuple[str, bytes]]:
    def dumps(d):
        return json_numpy.dumps(d).encode()

    bad = []
    bad.append(("not json", b"{this is not json"))
    bad.append(("json list", b"[1, 2, 3]"))
    bad.append(("missing camera", dumps({k: v for k, v in good.items() if k != "wrist_cam"})))
    bad.append(("float image", dumps({**good, "external_cam": good["external_cam"].astype(np.float32)})))
    bad.append(("gray image", dumps({**good, "wrist_cam": good["wrist_cam"][..., 0]})))
    bad.append(("short state", dumps({**good, "state": good["state"][:7]})))
    bad.append(("nan state", dumps({**good, "state": np.full(8, np.nan, np.float32)})))
    bad.append(("string state", dumps({**good, "state": "zeros"})))
    bad.append(("int instruction", dumps({**good, "instruction": 42})))
    bad.append(("bad num_steps", dumps({**good, "num_steps": -3})))
    bad.append(("object dtype", b'{"external_cam": {"__numpy__": "AAAA", "dtype": "|O", "shape": [1]}}'))
    bad.append(("lying shape", b'{"external_cam": {"__numpy__": "AAAA", "dtype": "|u1", "shape": [999, 999, 3]}}'))
    bad.append(("bad base64", b'{"external_cam": {"__numpy__": "!!", "dtype": "|u1", "shape": [1]}}'))
    bad.append(("not utf8", b"\xff\xfe\x00garbage"))
    bad.append(("oversized", b'{"pad": "' + b"x" * (3 * 2**20) + b'"}'))
    return bad


def test_bounded_load_with_malformed_requests(servers):
    """A few hundred requests on loopback, a third malformed: 0 crashes, 0 5xx, every bad one 4xx."""
    server, app, policy = servers["droid"]
    schema = SCHEMAS["droid"]
    rng = np.random.default_rng(2)
    # Count overlapping predict() calls: the server's lock must keep it at one inference at a time.
    active, peak, guard = [0], [0], threading.Lock()
    inner = policy.predict

    def counting_predict(obs):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.001)  # widen the window in which an overlap would show
            return inner(obs)
        finally:
            with guard:
                active[0] -= 1

    policy.predict = counting_predict
    good = build_request(schema, [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(2)],
                         "stack the blocks", np.zeros(8, np.float32))
    good_body = json_numpy.dumps(good).encode()
    bad = _bad_payloads(good)
    jobs = [("good", good_body)] * 200 + [bad[i % len(bad)] for i in range(100)]
    rng.shuffle(jobs)
    before = app.state.stats.server_errors
    results: list[tuple[str, int]] = []
    lock = threading.Lock()
    t0 = time.perf_counter()
    with httpx.Client(timeout=30) as http:
        def send(job):
            kind, body = job
            r = http.post(server.url + "/act", content=body, headers={"Content-Type": "application/json"})
            if r.status_code != 200:
                assert "error" in r.json(), r.text  # every refusal carries a message
            with lock:
                results.append((kind, r.status_code))

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(send, jobs))
    elapsed = time.perf_counter() - t0
    del policy.predict
    assert peak[0] == 1, f"{peak[0]} inferences overlapped"
    assert len(results) == 300
    assert all(code == 200 for kind, code in results if kind == "good")
    bad_codes = {kind: code for kind, code in results if kind != "good"}
    assert all(400 <= code < 500 for code in bad_codes.values()), bad_codes
    assert bad_codes["oversized"] == 413
    assert not any(code >= 500 for _, code in results)
    assert app.state.stats.server_errors == before
    assert server.thread.is_alive()
    assert httpx.get(server.url + "/act").json()["status"] == "ok"
    assert elapsed < 30, f"load test took {elapsed:.1f} s"
    print(f"\nload test: 300 requests (100 malformed) in {elapsed:.2f} s = {300 / elapsed:.0f} req/s; "
          f"bad -> {sorted(bad_codes.items())}")


def test_cli_serve_subprocess(ckpt):
    """`molmoact2 serve` as a user runs it, in its own process; our client talks to it."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "molmoact2", "serve", "--policy", str(ckpt), "--schema", "so101", "--port",
           str(port), "--trust-remote-code"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        url = f"http://127.0.0.1:{port}"
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        step = load_policy(url).predict(_obs("so101"))  # the registry's URL path
        assert step.actions.shape == (30, 6)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_cli_serve_refuses_clearly(ckpt, tmp_path):
    # `nano` pointed at an empty directory (robust to the day assets/nano/ ships): a clear refusal.
    env = {**os.environ, "MOLMOACT2_NANO_DIR": str(tmp_path / "no_nano_here")}
    r = subprocess.run([sys.executable, "-m", "molmoact2", "serve", "--policy", "nano", "--schema", "droid"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "holds no Nano checkpoint" in r.stderr and "nano.factory" in r.stderr
    # the spatial specialist answers questions and must not act: refused by name before anything loads
    r = subprocess.run([sys.executable, "-m", "molmoact2", "serve", "--policy", "nano-er", "--schema", "so101"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "spatial-question specialist" in r.stderr and "Use 'nano'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "molmoact2", "serve", "--policy", str(ckpt), "--schema", "droid"],
                       cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert r.returncode == 2 and "trust_remote_code" in r.stderr
    # compiled inference compiles OUR model's stages: refused for a checkpoint directory, before anything loads
    r = subprocess.run([sys.executable, "-m", "molmoact2", "serve", "--policy", str(ckpt), "--schema", "so101",
                        "--compiled"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--compiled is a Nano option" in r.stderr


def test_server_refuses_mismatched_policy(ckpt, servers):
    _, _, so101_policy = servers["so101"]
    with pytest.raises(ValueError, match="6-D state but schema 'droid' sends 8-D"):
        build_app(so101_policy, SCHEMAS["droid"])
