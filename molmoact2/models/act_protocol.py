"""The `/act` HTTP protocol of the official MolmoAct2 inference servers (molmoact2.md §9), both directions.

Wire format: a `json_numpy` body (ndarrays inline as {"__numpy__": base64, "dtype", "shape"}).
Sources (read 2026-11 via the search tools; not copied):
  * allenai/molmoact2 README §5 "Inference Servers": DROID server on port 8000 (`external_cam`,
    `wrist_cam`, `instruction`, `state` (8,) = [q1..q7, gripper]); YAM server on port 8202 (`top_cam`,
    `left_cam`, `right_cam`, `instruction`, `state` (14,)); both return `actions` (N, D) float32 and
    `dt_ms`; `GET /act` health JSON with `status`, `repo_id`, `norm_tag` (YAM adds `num_cameras`,
    `state_dim`).
  * allenai/molmoact2 examples/yam/molmoact_client.py: the official YAM client also sends `timestamp`
    and `normalization_tag`, and by default a compact variant `images_jpeg` = {"top", "left", "right"}:
    base64 JPEG strings instead of the three arrays; it parses replies with `json_numpy.loads`.
  * A DROID server derived from the official one: optional `num_steps` (default 10), errors as
    `{"error": msg}` with 400 (decode/missing field) or 500 (inference), `GET /healthz`.
  * SO-100/101: the official repository ships NO `/act` server (README §4 points to a third-party SO-101
    implementation). Our `so101` schema follows the DROID naming: `front_cam`, `wrist_cam`, `state` (6,),
    norm tag `so100_so101_molmoact2`; its default port 8101 is OUR choice, not an official one.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ActSchema:
    """One embodiment's request schema. `camera_fields` are in the model's image order (first = main)."""

    name: str
    camera_fields: tuple[str, ...]
    state_dim: int
    norm_tag: str
    default_port: int
    official: bool
    jpeg_keys: tuple[str, ...] = ()  # keys of the optional `images_jpeg` dict, same order as camera_fields

    @property
    def camera_keys(self) -> tuple[str, ...]:
        """Short camera names (as in norm stats `camera_keys`): `external_cam` -> `external`."""
        return tuple(f[: -len("_cam")] if f.endswith("_cam") else f for f in self.camera_fields)


SCHEMAS: dict[str, ActSchema] = {
    "droid": ActSchema("droid", ("external_cam", "wrist_cam"), 8, "franka_droid", 8000, True),
    "yam": ActSchema("yam", ("top_cam", "left_cam", "right_cam"), 14, "yam_dual_molmoact2", 8202, True,
                     jpeg_keys=("top", "left", "right")),
    "so101": ActSchema("so101", ("front_cam", "wrist_cam"), 6, "so100_so101_molmoact2", 8101, False),
}
SCHEMA_BY_NORM_TAG = {s.norm_tag: s for s in SCHEMAS.values()}

MAX_IMAGE_SIDE = 4096  # larger frames are a client bug (the model resizes to 378 anyway)
MAX_INSTRUCTION_CHARS = 2000
MAX_NUM_STEPS = 100


class RequestError(ValueError):
    """A request that does not follow the schema; the server answers 4xx with this message."""


def get_schema(name: str) -> ActSchema:
    if name not in SCHEMAS:
        raise ValueError(f"unknown /act schema {name!r}; expected one of {sorted(SCHEMAS)}")
    return SCHEMAS[name]


# ---- client side ----------------------------------------------------------------------------------
def build_request(schema: ActSchema, images: list[np.ndarray], instruction: str, state: np.ndarray,
                  *, num_steps: int | None = None, timestamp: float | None = None) -> dict[str, Any]:
    """The official request dict (encode with `json_numpy.dumps`). `images` in `schema.camera_fields` order."""
    if len(images) != len(schema.camera_fields):
        raise ValueError(f"schema {schema.name!r} takes {len(schema.camera_fields)} images "
                         f"({', '.join(schema.camera_fields)}), got {len(images)}")
    payload: dict[str, Any] = {field: np.ascontiguousarray(img) for field, img in zip(schema.camera_fields, images)}
    payload["instruction"] = str(instruction)
    payload["state"] = np.asarray(state, dtype=np.float32).reshape(-1)
    if num_steps is not None:
        payload["num_steps"] = int(num_steps)
    if timestamp is not None:
        payload["timestamp"] = float(timestamp)
    return payload


# ---- server side ----------------------------------------------------------------------------------
@dataclass
class ActRequest:
    images: list[np.ndarray]  # uint8 [H, W, 3], schema order
    instruction: str
    state: np.ndarray  # float32 [state_dim]
    num_steps: int | None
    timestamp: float | None
    episode_start: bool


def _check_image(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise RequestError(f"{name}: expected an HxWx3 uint8 RGB array (json_numpy), got {type(value).__name__}")
    if value.dtype != np.uint8:
        raise RequestError(f"{name}: expected dtype uint8 (RGB 0..255), got {value.dtype} {list(value.shape)}")
    if value.ndim != 3 or value.shape[2] != 3:
        raise RequestError(f"{name}: expected shape [H, W, 3], got {list(value.shape)}")
    if not (1 <= value.shape[0] <= MAX_IMAGE_SIDE and 1 <= value.shape[1] <= MAX_IMAGE_SIDE):
        raise RequestError(f"{name}: image side must be 1..{MAX_IMAGE_SIDE} px, got {list(value.shape[:2])}")
    return value


def _decode_jpeg(name: str, value: Any) -> np.ndarray:
    from PIL import Image

    if not isinstance(value, str):
        raise RequestError(f"images_jpeg.{name}: expected a base64 JPEG string, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            if im.width > MAX_IMAGE_SIDE or im.height > MAX_IMAGE_SIDE:
                raise RequestError(f"images_jpeg.{name}: image side must be <= {MAX_IMAGE_SIDE} px, got {im.size}")
            arr = np.asarray(im.convert("RGB"))
    except RequestError:
        raise
    except Exception as exc:  # any decoder failure is the client's input, not a server fault
        raise RequestError(f"images_jpeg.{name}: not a decodable base64 image ({type(exc).__name__}: {exc})") from exc
    return _check_image(f"images_jpeg.{name}", arr)


def parse_request(schema: ActSchema, payload: Any) -> ActRequest:
    """Validate a decoded request against `schema`; raise RequestError naming the field and the fix."""
    if not isinstance(payload, dict):
        raise RequestError(f"expected a JSON object with fields {list(schema.camera_fields)} + instruction, state; "
                           f"got {type(payload).__name__}")
    tag = payload.get("normalization_tag", payload.get("norm_tag"))
    if tag is not None and tag != schema.norm_tag:
        raise RequestError(f"this server serves norm tag {schema.norm_tag!r} (schema {schema.name!r}); the request "
                           f"asked for {tag!r}")
    jpegs = payload.get("images_jpeg")
    if jpegs is not None and schema.jpeg_keys and not any(f in payload for f in schema.camera_fields):
        if not isinstance(jpegs, dict):
            raise RequestError(f"images_jpeg: expected an object with keys {list(schema.jpeg_keys)}")
        missing = [k for k in schema.jpeg_keys if k not in jpegs]
        if missing:
            raise RequestError(f"images_jpeg: missing camera(s) {missing}; expected {list(schema.jpeg_keys)}")
        images = [_decode_jpeg(k, jpegs[k]) for k in schema.jpeg_keys]
    else:
        missing = [f for f in schema.camera_fields if f not in payload]
        if missing:
            raise RequestError(f"missing field(s) {missing}; schema {schema.name!r} expects cameras "
                               f"{list(schema.camera_fields)} (in this order), instruction and state")
        images = [_check_image(f, payload[f]) for f in schema.camera_fields]
    if "instruction" not in payload:
        raise RequestError("missing field 'instruction' (the task, a string)")
    instruction = payload["instruction"]
    if not isinstance(instruction, str) or not instruction.strip():
        raise RequestError(f"instruction: expected a non-empty string, got {type(instruction).__name__}")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise RequestError(f"instruction: at most {MAX_INSTRUCTION_CHARS} characters, got {len(instruction)}")
    if "state" not in payload:
        raise RequestError(f"missing field 'state' (raw robot state, ({schema.state_dim},) float32)")
    raw_state = payload["state"]
    if isinstance(raw_state, np.ndarray):
        if raw_state.dtype.kind not in "fiu":
            raise RequestError(f"state: expected a float array, got dtype {raw_state.dtype}")
        state = raw_state.astype(np.float32).reshape(-1) if raw_state.ndim <= 2 else None
    elif isinstance(raw_state, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw_state
    ):
        state = np.asarray(raw_state, dtype=np.float32)
    else:
        raise RequestError(f"state: expected ({schema.state_dim},) numbers, got {type(raw_state).__name__}")
    if state is None or state.shape != (schema.state_dim,):
        shape = list(np.shape(raw_state))
        raise RequestError(f"state: schema {schema.name!r} expects shape ({schema.state_dim},), got {shape}; "
                           f"dimensions are never padded or cropped")
    if not np.all(np.isfinite(state)):
        raise RequestError(f"state: contains NaN or inf: {state.tolist()}")
    num_steps = payload.get("num_steps")
    if num_steps is not None:
        if isinstance(num_steps, np.generic):
            num_steps = num_steps.item()
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= MAX_NUM_STEPS:
            raise RequestError(f"num_steps: expected an integer 1..{MAX_NUM_STEPS}, got {num_steps!r}")
    timestamp = payload.get("timestamp")
    if timestamp is not None:
        if isinstance(timestamp, np.generic):
            timestamp = timestamp.item()
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
            raise RequestError(f"timestamp: expected a finite number, got {timestamp!r}")
    episode_start = payload.get("episode_start", False)
    if not isinstance(episode_start, bool):
        raise RequestError(f"episode_start: expected true/false, got {episode_start!r}")
    return ActRequest(images, instruction, state, num_steps, None if timestamp is None else float(timestamp),
                      episode_start)
