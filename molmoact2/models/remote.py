"""A `Policy` that asks an `/act` server (the official DROID / YAM servers, or ours) for each chunk.

    policy = RemotePolicy("http://gpu-box:8000")     # schema from the server's health JSON
    step = policy.predict(obs)                        # Step.actions [N, D]; timings: round trip + server dt_ms

Before the first request the server's health (`GET /act`, else `GET /healthz`) is checked, so a
wrong URL fails with a clear message instead of at the first control step. Requests have timeouts
and a bounded number of retries for transport failures and 502/503/504; a 4xx is never retried (the
request itself is wrong) and its server message is shown.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from molmoact2.models.act_protocol import SCHEMA_BY_NORM_TAG, SCHEMAS, ActSchema, build_request, get_schema
from molmoact2.models.base import Observation, Step

RETRY_STATUS = (502, 503, 504)


class RemoteError(RuntimeError):
    """The server could not be reached or answered with an error; the message names URL and cause."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def base_url(url: str) -> str:
    """`http://host:8000/act/` -> `http://host:8000`."""
    u = url.strip().rstrip("/")
    if u.endswith("/act"):
        u = u[: -len("/act")]
    if not u.lower().startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s)://host:port URL, got {url!r}")
    return u


def _short(name: str) -> str:
    short = name.rsplit(".", 1)[-1]
    return short[: -len("_cam")] if short.endswith("_cam") else short


class RemotePolicy:
    """Client of an `/act` server; implements the Policy protocol."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = "auto",
        timeout_s: float = 30.0,
        connect_timeout_s: float = 3.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        num_steps: int | None = None,
        health_check: bool = True,
    ) -> None:
        if retries < 0 or retries > 10:
            raise ValueError(f"retries: expected 0..10, got {retries}")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeout_s and connect_timeout_s must be positive")
        self.url = base_url(url)
        self.schema_name = schema
        self.schema: ActSchema | None = None if schema == "auto" else get_schema(schema)
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(connect_timeout_s)
        self.retries, self.backoff_s = int(retries), float(backoff_s)
        self.num_steps = num_steps
        self.health_check = health_check
        self.health_info: dict[str, Any] | None = None
        self.name = f"remote:{self.url}"
        self._client = None
        self._index = 0
        self._episode_start = True

    # ---- connection ------------------------------------------------------------------------------
    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def health(self) -> dict[str, Any]:
        """GET /act (official health JSON), falling back to GET /healthz. Sets the schema when 'auto'."""
        import httpx

        errors = []
        for path in ("/act", "/healthz"):
            try:
                r = self._http().get(self.url + path, timeout=httpx.Timeout(min(self.timeout_s, 10.0),
                                                                          connect=self.connect_timeout_s))
            except httpx.HTTPError as exc:
                raise RemoteError(f"cannot reach the /act server at {self.url} ({type(exc).__name__}: {exc}). "
                                  f"Is it running, and is the host/port right?") from exc
            if r.status_code == 200:
                try:
                    info = r.json()
                except (json.JSONDecodeError, ValueError):
                    errors.append(f"GET {path}: 200 but not JSON")
                    continue
                if not isinstance(info, dict) or info.get("status") != "ok":
                    errors.append(f"GET {path}: status is {info.get('status') if isinstance(info, dict) else info!r}")
                    continue
                info["_endpoint"] = path
                self.health_info = info
                self._resolve_schema(info)
                return info
            errors.append(f"GET {path}: HTTP {r.status_code}")
        raise RemoteError(f"{self.url} does not look like an /act server: {'; '.join(errors)}")

    def _resolve_schema(self, info: dict[str, Any]) -> None:
        tag = info.get("norm_tag")
        if self.schema is None:
            if tag in SCHEMA_BY_NORM_TAG:
                self.schema = SCHEMA_BY_NORM_TAG[tag]
            elif info.get("schema") in SCHEMAS:
                self.schema = SCHEMAS[info["schema"]]
            else:
                raise RemoteError(f"{self.url}: cannot tell the request schema from the health JSON (norm_tag={tag!r});"
                                  f" pass schema= one of {sorted(SCHEMAS)}")
        elif tag is not None and tag != self.schema.norm_tag:
            raise RemoteError(f"{self.url} serves norm tag {tag!r} but schema {self.schema.name!r} is for "
                              f"{self.schema.norm_tag!r}; pick the matching schema or server")
        state_dim = info.get("state_dim")
        if state_dim is not None and int(state_dim) != self.schema.state_dim:
            raise RemoteError(f"{self.url} reports state_dim={state_dim}, schema {self.schema.name!r} sends "
                              f"{self.schema.state_dim}")

    # ---- Policy protocol -------------------------------------------------------------------------
    def reset(self) -> None:
        self._index = 0
        self._episode_start = True

    def _images_for(self, obs: Observation) -> tuple[list[np.ndarray], list[str], str]:
        schema = self.schema
        assert schema is not None
        names = list(obs.cameras)
        if len(names) != len(schema.camera_fields):
            raise ValueError(f"schema {schema.name!r} sends {len(schema.camera_fields)} cameras "
                             f"{list(schema.camera_keys)} (in this order); the observation has {len(names)}: {names}")
        by_short = {_short(n): n for n in names}
        if set(by_short) == set(schema.camera_keys):
            order = [by_short[k] for k in schema.camera_keys]
            note = "matched by name"
        else:
            order = names
            note = f"observation order mapped onto {list(schema.camera_fields)} (names differ; check the order)"
        return [obs.cameras[n].rgb for n in order], order, note

    def predict(self, obs: Observation) -> Step:
        import httpx
        import json_numpy

        if self.schema is None or (self.health_check and self.health_info is None):
            self.health()
        schema = self.schema
        assert schema is not None
        state = np.asarray(obs.state)
        if state.shape != (schema.state_dim,):
            raise ValueError(f"schema {schema.name!r} expects a raw state of shape ({schema.state_dim},), got "
                             f"{list(state.shape)}; dimensions are never padded or cropped")
        t0 = time.perf_counter()
        images, order, note = self._images_for(obs)
        payload = build_request(schema, images, obs.instruction, state, num_steps=self.num_steps,
                                timestamp=obs.timestamp_s or time.time())
        if self._episode_start:
            payload["episode_start"] = True  # our servers reset MolmoThink's cache; official ones ignore it
        body = json_numpy.dumps(payload)
        t1 = time.perf_counter()
        attempts, last_error = 0, ""
        response = None
        t_send = t1
        while attempts <= self.retries:
            attempts += 1
            t_send = time.perf_counter()
            try:
                r = self._http().post(self.url + "/act", content=body,
                                      headers={"Content-Type": "application/json"})
            except httpx.TimeoutException as exc:
                last_error = f"timed out after {self.timeout_s:.1f} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code == 200:
                    response = r
                    break
                message = _error_message(r)
                if r.status_code not in RETRY_STATUS:
                    raise RemoteError(f"POST {self.url}/act -> HTTP {r.status_code}: {message}", status=r.status_code)
                last_error = f"HTTP {r.status_code}: {message}"
            if attempts <= self.retries:
                time.sleep(self.backoff_s * 2 ** (attempts - 1))
        if response is None:
            raise RemoteError(f"POST {self.url}/act failed after {attempts} attempt(s): {last_error}")
        t2 = time.perf_counter()
        try:
            reply = json_numpy.loads(response.text)
        except Exception as exc:
            raise RemoteError(f"{self.url}/act answered 200 with a body that is not json_numpy ({exc})") from exc
        t3 = time.perf_counter()
        if not isinstance(reply, dict) or "actions" not in reply:
            raise RemoteError(f"{self.url}/act reply has no 'actions': keys {sorted(reply) if isinstance(reply, dict) else type(reply).__name__}")
        actions = np.asarray(reply["actions"])
        if actions.ndim == 3 and actions.shape[0] == 1:
            actions = actions[0]
        if actions.ndim != 2 or actions.dtype.kind not in "fiu":
            raise RemoteError(f"{self.url}/act returned actions of shape {list(actions.shape)} dtype {actions.dtype}; "
                              f"expected (N, D) float")
        actions = actions.astype(np.float32)
        server_dt = reply.get("dt_ms")
        round_trip_ms = (t2 - t_send) * 1e3
        timings = {"encode_ms": (t1 - t0) * 1e3, "round_trip_ms": round_trip_ms, "decode_ms": (t3 - t2) * 1e3,
                   "total_ms": (t3 - t0) * 1e3}
        if server_dt is not None:
            timings["server_dt_ms"] = float(server_dt)
            timings["network_ms"] = max(round_trip_ms - float(server_dt), 0.0)
        for key, value in (reply.get("timings_ms") or {}).items():
            if isinstance(value, (int, float)):
                timings[f"server_{key}"] = float(value)
        bins = reply.get("depth_bins")
        mask = reply.get("depth_update_mask")
        step = Step(
            index=self._index,
            timestamp_s=obs.timestamp_s,
            backend="remote",
            observation=obs,
            actions=actions,
            action_units="robot units (as served)",
            depth_bins=None if bins is None else np.asarray(bins, np.int64).reshape(-1),
            depth_update_mask=None if mask is None else np.asarray(mask, bool).reshape(-1),
            action_token_ids=None if reply.get("action_token_ids") is None
            else np.asarray(reply["action_token_ids"], np.int64).reshape(-1),
            timings_ms=timings,
            info={"url": self.url, "schema": schema.name, "attempts": attempts, "camera_order": order,
                  "camera_order_note": note, "action_horizon": reply.get("action_horizon"),
                  "server": {k: v for k, v in (self.health_info or {}).items() if isinstance(v, (str, int, float, bool))}},
        )
        self._index += 1
        self._episode_start = False
        return step


def _error_message(r: Any) -> str:
    try:
        doc = r.json()
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except (json.JSONDecodeError, ValueError):
        pass
    return r.text[:500]
