"""A safety guard that sits between any policy and any world (simulator or real robot).

Every action chunk passes through `SafetyGuard.check` before a world executes it. The guard never
invents actions: a chunk with NaNs or the wrong number of dimensions is refused, never zero-filled
or padded (a zero joint target on an absolute-joint robot is a violent move, not a "no-op").

Rules, in the order they are checked:

  estop         the e-stop is engaged: refuse everything until `release()`
  finite        NaN / inf anywhere in the chunk (or in the current state)
  dimension     action dimension != the robot's (or != the current state's)
  chunk_length  horizon outside [min_chunk_length, max_chunk_length]
  joint_limits  a target outside [joint_low, joint_high]  (refuse, or clip when `on_limit="clip"`)
  max_delta     a change larger than `max_delta_per_tick` between consecutive targets, the first
                one measured from the current state (refuse, or keep the safe prefix when
                `on_jump="truncate"`)

Every refusal or modification becomes a `SafetyRecord`; `SafetyVerdict.to_info()` is the structured
record views read from `Step.info["safety"]`, so a refusal is visible in recordings and the UI.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

SAFETY_FORMAT = "molmoact2_safety.v1"


@dataclass(frozen=True)
class SafetyConfig:
    """Limits for one robot. Arrays are per action dimension; `None` disables that rule.

    joint_low / joint_high  absolute target limits, robot units (e.g. radians, gripper 0..1)
    max_delta_per_tick      largest allowed |a[t] - a[t-1]| per dimension (scalar = every dimension)
    action_dim              expected action dimension (None = take it from the current state)
    min/max_chunk_length    allowed chunk horizon (the official fine-tunes emit 10..30 steps)
    on_limit                "refuse" the chunk, or "clip" the offending targets into the limits
    on_jump                 "refuse" the chunk, or "truncate" it before the first too-large change
    names                   optional dimension names used in messages
    """

    joint_low: tuple[float, ...] | None = None
    joint_high: tuple[float, ...] | None = None
    max_delta_per_tick: float | tuple[float, ...] | None = None
    action_dim: int | None = None
    min_chunk_length: int = 1
    max_chunk_length: int = 64  # 2x the official max horizon (30): anything longer is a bug upstream
    on_limit: Literal["refuse", "clip"] = "refuse"
    on_jump: Literal["refuse", "truncate"] = "refuse"
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.on_limit not in ("refuse", "clip"):
            raise ValueError(f"SafetyConfig.on_limit: expected 'refuse' or 'clip', got {self.on_limit!r}")
        if self.on_jump not in ("refuse", "truncate"):
            raise ValueError(f"SafetyConfig.on_jump: expected 'refuse' or 'truncate', got {self.on_jump!r}")
        if (self.joint_low is None) != (self.joint_high is None):
            raise ValueError("SafetyConfig: give both joint_low and joint_high, or neither")
        if self.joint_low is not None:
            low, high = np.asarray(self.joint_low, float), np.asarray(self.joint_high, float)
            if low.shape != high.shape or low.ndim != 1:
                raise ValueError(
                    f"SafetyConfig: joint_low and joint_high must be 1-D of equal length, got {low.shape} and {high.shape}"
                )
            if np.any(low > high):
                raise ValueError(f"SafetyConfig: joint_low must be <= joint_high in every dimension, got {low} > {high}")
            if self.action_dim is not None and low.shape[0] != self.action_dim:
                raise ValueError(f"SafetyConfig: joint limits have {low.shape[0]} dims but action_dim={self.action_dim}")
        if not 1 <= self.min_chunk_length <= self.max_chunk_length:
            raise ValueError(
                f"SafetyConfig: expected 1 <= min_chunk_length <= max_chunk_length, got "
                f"{self.min_chunk_length}..{self.max_chunk_length}"
            )

    @property
    def expected_dim(self) -> int | None:
        if self.action_dim is not None:
            return self.action_dim
        if self.joint_low is not None:
            return len(self.joint_low)
        return None


@dataclass
class SafetyRecord:
    """One refusal or modification. `action` is "refused", "clipped" or "truncated"."""

    rule: str
    action: str
    message: str
    step: int | None = None
    dim: int | None = None
    value: float | None = None
    limit: float | None = None
    time_s: float = field(default_factory=time.time)


@dataclass
class SafetyVerdict:
    """The guard's decision on one chunk. `actions` is None when the chunk was refused."""

    ok: bool
    actions: np.ndarray | None
    records: list[SafetyRecord]
    n_in: int
    n_out: int

    @property
    def refused(self) -> bool:
        return self.actions is None

    def to_info(self) -> dict[str, Any]:
        """JSON-able record for `Step.info["safety"]` (Step.save stores it as-is)."""
        return {
            "format": SAFETY_FORMAT,
            "ok": self.ok,
            "refused": self.refused,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "records": [asdict(r) for r in self.records],
        }


class SafetyRefused(RuntimeError):
    """Raised by `SafetyGuard.require` when a chunk is refused; carries the verdict."""

    def __init__(self, verdict: SafetyVerdict) -> None:
        self.verdict = verdict
        msgs = "; ".join(r.message for r in verdict.records if r.action == "refused")
        super().__init__(f"safety guard refused the action chunk: {msgs}")


class SafetyGuard:
    """Check action chunks against a `SafetyConfig`; keeps a log of every record it produced."""

    def __init__(self, config: SafetyConfig | None = None) -> None:
        self.config = config or SafetyConfig()
        self._estop_reason: str | None = None
        self._lock = threading.Lock()  # the e-stop may be pressed from a UI thread
        self.log: list[SafetyRecord] = []

    # ---- e-stop ------------------------------------------------------------------------------
    def estop(self, reason: str = "e-stop pressed") -> None:
        with self._lock:
            self._estop_reason = reason
        self.log.append(SafetyRecord("estop", "engaged", f"e-stop engaged: {reason}"))

    def release(self) -> None:
        with self._lock:
            was = self._estop_reason
            self._estop_reason = None
        if was is not None:
            self.log.append(SafetyRecord("estop", "released", "e-stop released"))

    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    # ---- checks ------------------------------------------------------------------------------
    def check(self, actions: Any, current_state: Any | None = None) -> SafetyVerdict:
        """Decide whether `actions` [H, D] may be executed from `current_state` [D] (robot units)."""
        cfg = self.config
        records: list[SafetyRecord] = []

        def refuse(rule: str, message: str, **kw: Any) -> SafetyVerdict:
            records.append(SafetyRecord(rule, "refused", message, **kw))
            return self._finish(SafetyVerdict(False, None, records, n_in, 0))

        raw = np.asarray(actions) if actions is not None else None
        n_in = int(raw.shape[0]) if raw is not None and raw.ndim >= 1 else 0
        if self._estop_reason is not None:
            return refuse("estop", f"e-stop engaged ({self._estop_reason}); call release() to resume")
        if raw is None or raw.ndim != 2:
            shape = None if raw is None else list(raw.shape)
            return refuse("dimension", f"expected an action chunk [horizon, action_dim], got shape {shape}")
        if not np.issubdtype(raw.dtype, np.number) or np.issubdtype(raw.dtype, np.complexfloating):
            return refuse("dimension", f"expected real-valued actions, got dtype {raw.dtype}")
        chunk = raw.astype(np.float64)
        bad = ~np.isfinite(chunk)
        if bad.any():
            t, d = (int(i) for i in np.argwhere(bad)[0])
            return refuse(
                "finite",
                f"{int(bad.sum())} non-finite value(s) in the chunk, first at step {t} {self._dim_name(d)} "
                f"= {chunk[t, d]}",
                step=t,
                dim=d,
            )
        state = None
        if current_state is not None:
            state = np.asarray(current_state, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(state)):
                return refuse("finite", f"current state has non-finite values: {state.tolist()}")
        dim = chunk.shape[1]
        expected = cfg.expected_dim
        if expected is not None and dim != expected:
            return refuse(
                "dimension",
                f"expected action_dim {expected}, got {dim}; refusing rather than padding or cropping dimensions",
                value=float(dim),
                limit=float(expected),
            )
        if state is not None and state.shape[0] != dim:
            return refuse(
                "dimension",
                f"action_dim {dim} != current state dim {state.shape[0]}; the chunk is for a different robot",
                value=float(dim),
                limit=float(state.shape[0]),
            )
        h = chunk.shape[0]
        if not cfg.min_chunk_length <= h <= cfg.max_chunk_length:
            return refuse(
                "chunk_length",
                f"chunk horizon {h} outside the allowed {cfg.min_chunk_length}..{cfg.max_chunk_length}",
                value=float(h),
                limit=float(cfg.max_chunk_length if h > cfg.max_chunk_length else cfg.min_chunk_length),
            )

        if cfg.joint_low is not None:
            low, high = np.asarray(cfg.joint_low, float), np.asarray(cfg.joint_high, float)
            below, above = chunk < low, chunk > high
            if below.any() or above.any():
                for t, d in np.argwhere(below | above):
                    lim = low[d] if below[t, d] else high[d]
                    records.append(
                        SafetyRecord(
                            "joint_limits",
                            "clipped" if cfg.on_limit == "clip" else "refused",
                            f"step {int(t)} {self._dim_name(int(d))} target {chunk[t, d]:.4g} outside "
                            f"[{low[d]:.4g}, {high[d]:.4g}]",
                            step=int(t),
                            dim=int(d),
                            value=float(chunk[t, d]),
                            limit=float(lim),
                        )
                    )
                if cfg.on_limit == "refuse":
                    return self._finish(SafetyVerdict(False, None, records, n_in, 0))
                chunk = np.clip(chunk, low, high)

        if cfg.max_delta_per_tick is not None:
            max_delta = np.broadcast_to(np.asarray(cfg.max_delta_per_tick, float), (dim,))
            prev = np.vstack([state[None], chunk]) if state is not None else chunk
            deltas = np.abs(np.diff(prev, axis=0))  # row t = change INTO target t (from state for t=0)
            offset = 0 if state is not None else 1
            jumps = deltas > max_delta
            if jumps.any():
                t, d = (int(i) for i in np.argwhere(jumps)[0])
                step_idx = t + offset
                source = "the current state" if (state is not None and t == 0) else f"step {step_idx - 1}"
                message = (
                    f"step {step_idx} {self._dim_name(d)} changes by {deltas[t, d]:.4g} from {source}, "
                    f"more than max_delta_per_tick {max_delta[d]:.4g}"
                )
                if cfg.on_jump == "refuse" or step_idx == 0:
                    records.append(
                        SafetyRecord("max_delta", "refused", message, step=step_idx, dim=d,
                                     value=float(deltas[t, d]), limit=float(max_delta[d]))
                    )
                    return self._finish(SafetyVerdict(False, None, records, n_in, 0))
                records.append(
                    SafetyRecord("max_delta", "truncated", message + f"; executing only steps 0..{step_idx - 1}",
                                 step=step_idx, dim=d, value=float(deltas[t, d]), limit=float(max_delta[d]))
                )
                chunk = chunk[:step_idx]
                if chunk.shape[0] < cfg.min_chunk_length:
                    records.append(
                        SafetyRecord("chunk_length", "refused",
                                     f"after truncation only {chunk.shape[0]} step(s) remain, fewer than "
                                     f"min_chunk_length {cfg.min_chunk_length}",
                                     value=float(chunk.shape[0]), limit=float(cfg.min_chunk_length))
                    )
                    return self._finish(SafetyVerdict(False, None, records, n_in, 0))

        out = chunk.astype(raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float32)
        return self._finish(SafetyVerdict(True, out, records, n_in, int(out.shape[0])))

    def require(self, actions: Any, current_state: Any | None = None) -> np.ndarray:
        """Like `check`, but raise `SafetyRefused` instead of returning a refused verdict."""
        verdict = self.check(actions, current_state)
        if verdict.refused:
            raise SafetyRefused(verdict)
        return verdict.actions  # type: ignore[return-value]

    def guard_step(self, step: Any, current_state: Any | None = None) -> SafetyVerdict:
        """Check `step.actions` and record the verdict in `step.info["safety"]` (the chunk to run is
        `verdict.actions`; the Step keeps what the policy proposed, so views can show both)."""
        if current_state is None and getattr(step, "observation", None) is not None:
            current_state = step.observation.state
        verdict = self.check(step.actions, current_state)
        step.info["safety"] = verdict.to_info()
        return verdict

    # ---- helpers -----------------------------------------------------------------------------
    def _finish(self, verdict: SafetyVerdict) -> SafetyVerdict:
        self.log.extend(verdict.records)
        return verdict

    def _dim_name(self, d: int) -> str:
        names = self.config.names
        if names is not None and 0 <= d < len(names):
            return f"dim {d} ({names[d]})"
        return f"dim {d}"


def limits_from_norm_stats(
    stats: dict[str, Any], *, margin_frac: float = 0.1
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Joint limits from a norm-stats `action_stats` entry (min/max, widened by `margin_frac` of the range).

    A convenience for robots without a hand-written limit table: the training data's range is what
    the policy has seen; targets far outside it deserve a stop, not a silent clip.
    """
    if "min" not in stats or "max" not in stats:
        raise ValueError(f"limits_from_norm_stats: expected 'min' and 'max' in action_stats, got keys {sorted(stats)}")
    lo, hi = np.asarray(stats["min"], float), np.asarray(stats["max"], float)
    span = np.maximum(hi - lo, 1e-6)
    return tuple((lo - margin_frac * span).tolist()), tuple((hi + margin_frac * span).tolist())
