"""In-process policy call vs the same policy behind our /act server on 127.0.0.1 (real uvicorn + httpx).

    .venv/bin/python bench/act_roundtrip.py [--n 50] [--h 180 --w 320]

Served model: the tiny test checkpoint (tests/fixtures/tiny_checkpoint.py) through HFCheckpointPolicy, so
the numbers measure protocol overhead (json_numpy encode, HTTP, decode, validation), not a real model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--h", type=int, default=180)
    ap.add_argument("--w", type=int, default=320)
    args = ap.parse_args()
    import os

    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="mact2-bench-hf-"))
    import molmoact2  # noqa: F401  (offline settings)
    from fixtures.tiny_checkpoint import build_tiny_checkpoint
    from molmoact2.models.act_protocol import SCHEMAS
    from molmoact2.models.base import CameraFrame, Observation
    from molmoact2.models.hf import HFCheckpointPolicy
    from molmoact2.models.remote import RemotePolicy
    from molmoact2.serve.app import ServerThread, build_app

    ckpt = build_tiny_checkpoint(Path(tempfile.mkdtemp()) / f"tiny_{uuid.uuid4().hex[:8]}")
    schema = SCHEMAS["droid"]
    policy = HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=schema.norm_tag)
    rng = np.random.default_rng(0)
    cams = {k: CameraFrame(rgb=rng.integers(0, 255, (args.h, args.w, 3), dtype=np.uint8)) for k in schema.camera_keys}
    obs = Observation(cameras=cams, state=np.zeros(8, np.float32), instruction="pick up the cube")
    warm = 5
    local = np.array([policy.predict(obs).timings_ms["total_ms"] for _ in range(args.n + warm)][warm:])
    with ServerThread(build_app(policy, schema)) as server:
        client = RemotePolicy(server.url)
        steps = [client.predict(obs) for _ in range(args.n + warm)][warm:]
    remote = {k: np.array([s.timings_ms[k] for s in steps]) for k in
              ("total_ms", "round_trip_ms", "server_dt_ms", "network_ms", "encode_ms")}
    med = float(np.median(local))
    print(f"droid schema, 2 cameras {args.h}x{args.w}, {args.n} calls each (after {warm} warm-up), median / p90 ms")
    print(f"{'path':34s} {'median':>8s} {'p90':>8s} {'x in-process':>13s}")
    print(f"{'in-process policy.predict':34s} {med:8.2f} {np.percentile(local, 90):8.2f} {1.0:13.2f}")
    for key, label in (("total_ms", "RemotePolicy.predict (total)"), ("round_trip_ms", "  HTTP round trip"),
                       ("server_dt_ms", "  server inference (dt_ms)"), ("network_ms", "  transport+decode+validate"),
                       ("encode_ms", "  client json_numpy encode")):
        v = remote[key]
        print(f"{label:34s} {np.median(v):8.2f} {np.percentile(v, 90):8.2f} {np.median(v) / med:13.2f}")


if __name__ == "__main__":
    main()
