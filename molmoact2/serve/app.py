"""Our `/act` server: the official MolmoAct2 wire protocol in front of any `Policy`.

Official clients work against it unchanged (same fields, same json_numpy bodies, same health JSON,
`{"error": msg}` on failure). It adds fields official clients ignore: `action_horizon`,
`depth_bins`, `depth_update_mask`, `action_token_ids`, `timings_ms`, and accepts an optional
`episode_start: true` that resets the policy (MolmoThink's depth cache) before inference.

Robustness: bodies larger than `max_body_bytes` get 413 before they are read in full; anything
that does not decode or does not match the schema gets 400 with a message; a policy error gets 500
with a message; the process keeps serving. One inference runs at a time (a lock): the model is
not re-entrant and a GPU has one queue anyway. Health checks do not wait for the lock.
"""

# No `from __future__ import annotations`: FastAPI resolves handler annotations (Request) at definition
# time, and Request is imported inside build_app to keep fastapi out of `import molmoact2`.
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from molmoact2.models.act_protocol import ActSchema, RequestError, parse_request
from molmoact2.models.base import CameraFrame, Observation

DEFAULT_MAX_BODY_BYTES = 64 * 2**20  # three 1080p frames as json_numpy base64 are ~25 MB


@dataclass
class ServerStats:
    requests: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0


def _json_response(payload: dict[str, Any], status: int = 200):
    import json_numpy
    from fastapi.responses import Response

    return Response(content=json_numpy.dumps(payload), status_code=status, media_type="application/json")


def check_policy_matches_schema(policy: Any, schema: ActSchema) -> None:
    """Refuse to start when the served policy cannot take this schema's state (no silent padding)."""
    meta = getattr(policy, "meta", None)  # norm-stats metadata of the policy's tag (HF checkpoints, Nano)
    meta = meta if isinstance(meta, dict) else {}
    state_dim = getattr(policy, "state_dim", None)
    if state_dim is None and "min" in (meta.get("state_stats") or {}):
        state_dim = len(meta["state_stats"]["min"])
    if state_dim is not None and int(state_dim) != schema.state_dim:
        raise ValueError(f"policy {getattr(policy, 'name', policy)!r} takes a {state_dim}-D state but schema "
                         f"{schema.name!r} sends {schema.state_dim}-D; choose the matching --schema or --norm-tag")
    keys = getattr(policy, "camera_keys", None) or meta.get("camera_keys")
    if keys is not None and len(keys) != len(schema.camera_fields):
        raise ValueError(f"policy expects cameras {list(keys)} but schema {schema.name!r} sends "
                         f"{list(schema.camera_fields)}")


def build_app(policy: Any, schema: ActSchema, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
              repo_id: str | None = None):
    """A FastAPI app serving `policy` with `schema`."""
    import json_numpy
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    check_policy_matches_schema(policy, schema)
    app = FastAPI(title=f"MolmoAct2 Workbench /act server ({schema.name})", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    stats = ServerStats()
    app.state.stats = stats
    app.state.lock = lock

    def health_doc() -> dict[str, Any]:
        return {
            "status": "ok",
            "repo_id": repo_id or getattr(policy, "name", type(policy).__name__),
            "norm_tag": getattr(policy, "norm_tag", None) or schema.norm_tag,
            "device": getattr(policy, "device", "cpu"),
            "dtype": getattr(policy, "dtype", None),
            "num_cameras": len(schema.camera_fields),
            "state_dim": schema.state_dim,
            "schema": schema.name,
            "camera_fields": list(schema.camera_fields),
            "server": "molmoact2-workbench",
            "busy": lock.locked(),
            "requests": stats.requests,
        }

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _json_response({"error": f"invalid request: {exc.errors()}"}, 400)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception):  # last line of defence: never crash, always JSON
        stats.server_errors += 1
        return _json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    @app.get("/act")
    async def health():
        return _json_response(health_doc())

    @app.get("/healthz")
    async def healthz():
        return _json_response({"status": "ok", "schema": schema.name})

    def decode_and_parse(raw: bytes):
        try:
            payload = json_numpy.loads(raw.decode("utf-8"))
        except Exception as exc:  # any decode failure (bad JSON, bad base64, bad dtype/shape) is the client's
            raise RequestError(f"failed to decode json_numpy body: {type(exc).__name__}: {exc}") from exc
        return parse_request(schema, payload)

    def infer(req) -> tuple[int, dict[str, Any]]:
        cams = {key: CameraFrame(rgb=np.ascontiguousarray(img)) for key, img in zip(schema.camera_keys, req.images)}
        obs = Observation(cameras=cams, state=req.state, instruction=req.instruction,
                          timestamp_s=req.timestamp or 0.0)
        with lock:
            t0 = time.perf_counter()
            if req.episode_start:
                policy.reset()
            saved = getattr(policy, "num_steps", None)
            if req.num_steps is not None and hasattr(policy, "num_steps"):
                policy.num_steps = req.num_steps  # per-request flow steps, as the official servers allow
            try:
                step = policy.predict(obs)
            finally:
                if req.num_steps is not None and hasattr(policy, "num_steps"):
                    policy.num_steps = saved
            dt_ms = (time.perf_counter() - t0) * 1e3
        actions = np.asarray(step.actions, dtype=np.float32)
        if actions.ndim != 2:
            raise RuntimeError(f"policy returned actions of shape {list(actions.shape)}, expected [N, D]")
        out: dict[str, Any] = {"actions": actions, "dt_ms": dt_ms, "action_horizon": int(actions.shape[0])}
        if step.depth_bins is not None:
            out["depth_bins"] = np.asarray(step.depth_bins, np.int64)
        if step.depth_update_mask is not None:
            out["depth_update_mask"] = np.asarray(step.depth_update_mask, bool)
        if step.action_token_ids is not None:
            out["action_token_ids"] = np.asarray(step.action_token_ids, np.int64)
        if step.timings_ms:
            out["timings_ms"] = {k: float(v) for k, v in step.timings_ms.items()}
        return 200, out

    @app.post("/act")
    async def act(request: Request):
        stats.requests += 1
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > max_body_bytes
            except ValueError:
                stats.client_errors += 1
                return _json_response({"error": f"bad Content-Length {declared!r}"}, 400)
            if too_big:
                stats.client_errors += 1
                return _json_response({"error": f"request body of {declared} bytes exceeds the limit of "
                                                f"{max_body_bytes} bytes"}, 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                stats.client_errors += 1
                return _json_response({"error": f"request body exceeds the limit of {max_body_bytes} bytes"}, 413)
            chunks.append(chunk)
        try:
            # Decoding megabytes of base64 takes milliseconds: off the event loop, so health checks stay instant.
            req = await run_in_threadpool(decode_and_parse, b"".join(chunks))
        except RequestError as exc:
            stats.client_errors += 1
            return _json_response({"error": str(exc)}, 400)
        try:
            status, out = await run_in_threadpool(infer, req)
        except ValueError as exc:  # the policy judged the (schema-valid) input unusable
            stats.client_errors += 1
            return _json_response({"error": f"bad input for this policy: {exc}"}, 422)
        except Exception as exc:
            stats.server_errors += 1
            return _json_response({"error": f"inference failed: {type(exc).__name__}: {exc}"}, 500)
        stats.ok += 1
        return _json_response(out, status)

    return app


class ServerThread:
    """Run an app with uvicorn in a background thread on a free loopback port (tests, notebooks).

        with ServerThread(app) as server:
            RemotePolicy(server.url).predict(obs)
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url} within {timeout_s} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(policy: Any, schema: ActSchema, *, host: str = "127.0.0.1", port: int | None = None,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Serve in the foreground until Ctrl-C."""
    import uvicorn

    app = build_app(policy, schema, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port or schema.default_port, log_level="info")
