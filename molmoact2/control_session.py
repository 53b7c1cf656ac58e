"""Closed-loop control you can drive by hand: run / step / pause / reset a policy in the simulator,
through `run_episode` and the safety guard, with a live Rerun feed and a downloadable recording.

    session = ControlSession(ControlConfig(policy_spec="expert", task="touch", seed=0))
    session.step()                        # exactly one chunk (predict -> guard -> execute), then paused
    session.run(); session.wait_stopped()  # chunks until success / time-out / refusal / pause()
    print(format_status(session.status()))
    save_rrd(session.steps, "/tmp/touch.rrd")  # molmoact2.viz.logger; live: molmoact2.viz.feed.StepFeed
    session.close()

Why a worker thread: MuJoCo's EGL rendering context belongs to the thread that created it, while
a UI calls run/step/pause/reset from whatever thread serves the click. So ONE thread per session
owns the env, the policy and the `run_episode` generator and takes commands from a queue. A pause
is honoured between chunks (a chunk the guard accepted is executed whole; the e-stop is the tool for
stopping mid-chunk).

Model specs are the registry's (`nano`, `nano:DIR`, checkpoint dir, `http(s)://` /act URL) plus
`expert`: the simulator's scripted expert as a Policy. `expert` lives here, not in the registry,
because the registry is in the models layer and the expert needs the world (sim) it acts in.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from molmoact2.models.base import Step

EXPERT_SPEC = "expert"
_RANDOM_NANO = ("a random test Nano (`nano:/tmp/nano_random`, built with "
                "`python -m molmoact2.models.nano.factory --out /tmp/nano_random`; meaningless output)")
NANO_NOT_SHIPPED_NOTE = ("Nano (the workbench's own small model, issue 6) is **not shipped yet**: `nano` reports that "
                         "clearly. Use {alternatives}.")
# Which other specs make sense depends on the tab: only the Control tab can run the expert or an /act server.
CONTROL_ALTERNATIVES = f"`expert`, {_RANDOM_NANO}, a local checkpoint directory, or an /act server URL"
SPATIAL_ALTERNATIVES = (f"{_RANDOM_NANO} or a local MolmoAct2 checkpoint directory "
                        "(an /act server cannot answer questions)")


def nano_note(alternatives: str = CONTROL_ALTERNATIVES) -> str:
    """One honest sentence about Nano for the model selector (true before and after it ships)."""
    from molmoact2.models.registry import nano_default_dir

    directory = nano_default_dir()
    if (directory / "config.json").is_file():
        return f"Nano is available: `nano` loads {directory}."
    return NANO_NOT_SHIPPED_NOTE.format(alternatives=alternatives)


def default_control_spec() -> str:
    """`nano` when a Nano checkpoint is there to load (the point of the tab: a model in the loop), else `expert`
    so that Run works out of the box either way."""
    from molmoact2.models.registry import nano_default_dir

    return "nano" if (nano_default_dir() / "config.json").is_file() else EXPERT_SPEC


CONTROL_SPEC_HELP = "'expert' (the simulator's scripted expert), or a model spec: 'nano', 'nano:DIR', a checkpoint " \
                    "directory, or an http(s)://host:port /act URL"


# ---- the model selector: what a spec is and whether it is usable ------------------------------------
def control_spec_kind(spec: str) -> str:
    """'expert', or the registry's kind ('nano', 'remote', 'checkpoint')."""
    from molmoact2.models.registry import spec_kind

    s = str(spec or "").strip()
    if not s:
        raise ValueError(f"empty model spec; expected {CONTROL_SPEC_HELP}")
    return "expert" if s.lower() == EXPERT_SPEC else spec_kind(s)


@dataclass(frozen=True)
class SpecHealth:
    """The answer of `check_spec`: usable or not, and why, in words a user can act on."""

    spec: str
    kind: str
    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    round_trip_ms: float | None = None


def check_spec(spec: str, *, trust_remote_code: bool = False, norm_tag: str | None = None,
               timeout_s: float = 5.0, for_actions: bool = False) -> SpecHealth:
    """Check a model spec WITHOUT loading the model: an /act server's health JSON (timed), a checkpoint
    directory's preflight (files, norm tags, remote code, memory), Nano's directory. `for_actions` (the Control
    tab) also refuses what `refuse_for_actions` refuses, so Check and Run agree. Never raises for a bad spec:
    the problem is in `message`."""
    s = str(spec or "").strip()
    try:
        kind = control_spec_kind(s)
    except ValueError as exc:
        return SpecHealth(s, "unknown", False, str(exc))
    try:
        if kind == "expert":
            return SpecHealth(s, kind, True, "the simulator's scripted expert (privileged: it reads object poses "
                                             "from the simulation); always available")
        if kind == "remote":
            return _check_remote(s, timeout_s)
        if kind == "nano":
            from molmoact2.models.registry import nano_spec_dir, refuse_for_actions

            if for_actions:
                refuse_for_actions(s)
            directory = nano_spec_dir(s)
            return _check_dir(s, kind, directory, trust_remote_code=False, norm_tag=norm_tag)
        path = Path(s).expanduser()
        if not path.is_dir():
            what = "is a file" if path.exists() else "does not exist"
            return SpecHealth(s, kind, False, f"{path} {what}; expected {CONTROL_SPEC_HELP}")
        return _check_dir(s, kind, path, trust_remote_code=trust_remote_code, norm_tag=norm_tag)
    except (NotImplementedError, FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
        return SpecHealth(s, kind, False, str(exc))


def _check_remote(url: str, timeout_s: float) -> SpecHealth:
    from molmoact2.models.remote import RemotePolicy

    policy = RemotePolicy(url, timeout_s=timeout_s, connect_timeout_s=min(timeout_s, 3.0), retries=0)
    try:
        t0 = time.perf_counter()
        info = policy.health()
        ms = (time.perf_counter() - t0) * 1e3
    finally:
        policy.close()
    details = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None}
    schema = policy.schema.name if policy.schema is not None else info.get("schema")
    details["schema"] = schema
    return SpecHealth(url, "remote", True, f"/act server at {policy.url} is up (health from GET {info['_endpoint']})",
                      details, round_trip_ms=ms)


def _check_dir(spec: str, kind: str, directory: Path, *, trust_remote_code: bool, norm_tag: str | None) -> SpecHealth:
    from molmoact2.models.hf import preflight

    pf = preflight(directory, trust_remote_code=trust_remote_code, norm_tag=norm_tag or None)
    details = {"directory": str(pf.checkpoint_dir), "norm_tag": pf.norm_tag,
               "norm_tags": sorted(pf.norm_stats.get("metadata_by_tag", {})), "device": pf.device, "dtype": pf.dtype,
               "weights_GiB": round(pf.memory.bytes_at(pf.dtype) / 2**30, 3),
               "remote_code": pf.code_files or "none (natively registered)"}
    if pf.warnings:
        details["warnings"] = pf.warnings
    what = "Nano checkpoint" if kind == "nano" else "checkpoint"
    return SpecHealth(spec, kind, True, f"{what} at {pf.checkpoint_dir} passes the pre-load checks", details)


def format_health(h: SpecHealth) -> str:
    """Markdown for the health indicator: one headline (ok / error) and the details."""
    if not h.ok:
        return f"❌ **error** (`{h.kind}`) — {h.message}"
    parts = [f"✅ **ok** (`{h.kind}`) — {h.message}"]
    if h.kind == "remote":
        d = h.details
        parts.append(f"norm_tag `{d.get('norm_tag')}` · schema `{d.get('schema')}` · round trip "
                     f"{h.round_trip_ms:.1f} ms · repo `{d.get('repo_id')}` · device `{d.get('device')}`")
    elif h.details:
        parts.append(" · ".join(f"{k} `{v}`" for k, v in h.details.items()))
    return "\n\n".join(parts)


# ---- the session --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ControlConfig:
    """What one episode runs. `policy_spec` is ignored when a `policy_factory` is given to the session."""

    policy_spec: str = EXPERT_SPEC
    task: str = "touch"
    seed: int = 0
    image_size: int = 224
    depth: bool = True  # metric depth per camera: the viewer's point clouds (costs render time)
    on_limit: Literal["refuse", "clip"] = "refuse"  # out-of-limit targets: refuse the chunk, or clip them
    max_steps: int | None = None  # env ticks; None = the task's own time limit
    trust_remote_code: bool = False
    norm_tag: str | None = None
    depth_reasoning: bool = False  # MolmoThink (Nano / Think checkpoints): depth codes + update mask per chunk
    # Name another object of the seed's layout in the instruction ("" = the seed's own): same picture, other
    # words -- does the policy follow them? (SimEnv.reset's "target" option)
    target: str = ""
    # Euler steps of a flow-matching action expert (None: the model's own setting). Fewer is faster and coarser;
    # the viewer shows one denoising state per step.
    num_steps: int | None = None
    # Nano only: pin each chunk's first k actions to the previous plan's (NanoPolicy carry_steps; 0 = off), so
    # consecutive chunks continue one another instead of each drawing its own mode (gripper open or shut).
    carry_steps: int = 0
    # Nano only: "continuous" (the flow expert) or "discrete" (OpenFAST ids, read with the shipped
    # assets/openfast_so101_sim tokenizer); with `constrain_action_tokens` the ids are decoded under the OpenFAST
    # length grammar, so every chunk decodes (free, as the real model, about half of Nano's chunks fail).
    action_mode: Literal["continuous", "discrete"] = "continuous"
    constrain_action_tokens: bool = False
    # Nano only: vision, prefill and flow expert through torch.compile (NanoPolicy `compiled`): the same chunks up to
    # float rounding, faster calls; the first chunk at each prompt-length bucket compiles (20–30 s).
    compiled: bool = False


@dataclass(frozen=True)
class ControlStatus:
    """A snapshot for the status line. `state`: empty | loading | ready | running | paused | done | error."""

    state: str
    config: ControlConfig
    policy_name: str = ""
    instruction: str = ""
    target_options: tuple[str, ...] = ()  # objects this layout's instruction can name
    chunks: int = 0
    ticks: int = 0
    refusals: int = 0
    clipped_targets: int = 0  # joint targets the guard clipped to the limits (on_limit="clip")
    refusal_messages: tuple[str, ...] = ()
    success: bool = False
    stopped_by: str | None = None
    loop_hz: float | None = None  # env ticks per second of loop time (predict + guard + sim + render)
    last_predict_ms: float | None = None
    # the model's own per-stage split of the last predict (vision, prefill, depth, action expert, ...)
    last_stages_ms: tuple[tuple[str, float], ...] = ()
    time_limit_steps: int | None = None
    # how far the episode got with the named object (sim.progress): touched / lifted / slid / in the bin
    progress: str = ""
    grammar_changed: int = 0  # discrete chunks whose ids the OpenFAST length grammar had to change
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state in ("loading", "running")


class _TimedPolicy:
    """Measures each predict's wall time, so the loop can split a chunk into predict vs execute."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.last_ms = inner, getattr(inner, "name", type(inner).__name__), 0.0

    def reset(self) -> None:
        self.inner.reset()

    def predict(self, obs: Any) -> Step:
        t0 = time.perf_counter()
        step = self.inner.predict(obs)
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return step


def make_control_policy(config: ControlConfig, env: Any) -> Any:
    """The Policy named by `config.policy_spec` for `env` (`expert`, or anything `load_policy` takes)."""
    from molmoact2.models.act_protocol import MAX_NUM_STEPS  # the /act protocol's bound, for every model kind

    kind = control_spec_kind(config.policy_spec)
    if config.num_steps is not None and not 1 <= config.num_steps <= MAX_NUM_STEPS:
        raise ValueError(f"Euler steps: expected 1..{MAX_NUM_STEPS} or none (the model's own), got {config.num_steps}")
    if not 0 <= config.carry_steps < 30:
        raise ValueError(f"Carry steps: expected 0 (off) .. 29 actions of the 30-action chunk, got {config.carry_steps}")
    if config.action_mode not in ("continuous", "discrete"):
        raise ValueError(f"action mode: expected 'continuous' or 'discrete', got {config.action_mode!r}")
    if config.action_mode == "discrete" and kind != "nano":
        raise ValueError("the discrete (OpenFAST) mode here drives Nano only: the expert has no tokens, an /act server "
                         "chooses its own mode, and a real checkpoint needs its FAST tokenizer directory "
                         "(HFCheckpointPolicy(dir, mode='discrete', action_tokenizer=DIR) in a notebook)")
    if config.constrain_action_tokens and config.action_mode != "discrete":
        raise ValueError("the OpenFAST length grammar constrains discrete decoding: choose the discrete mode")
    if config.num_steps is not None and config.action_mode == "discrete":
        raise ValueError("the discrete mode decodes OpenFAST tokens, it has no flow expert to integrate: set Euler "
                         "steps to 0 (none)")
    if config.carry_steps and config.action_mode == "discrete":
        raise ValueError("carry-over pins the flow expert's plan; the discrete mode has none: set Carry steps to 0")
    if config.carry_steps and kind != "nano":
        raise ValueError("carry-over is a Nano option (it pins the flow expert's first actions inside our own model); "
                         "set Carry steps to 0 for the expert, checkpoints and /act servers")
    if config.compiled and kind != "nano":
        raise ValueError("compiled inference is a Nano option (torch.compile of our own model's stages); untick it "
                         "for the expert, checkpoints and /act servers")
    from molmoact2.models.registry import load_policy, refuse_for_actions

    refuse_for_actions(config.policy_spec)
    if kind == "expert":
        if config.num_steps is not None:
            raise ValueError("the scripted expert has no flow-matching expert to integrate: set Euler steps to 0 (none)")
        from molmoact2.runner import ExpertPolicy

        return ExpertPolicy(env)
    opts: dict[str, Any] = {}
    if config.num_steps is not None:  # every model kind takes it: Nano, a checkpoint, an /act server per request
        opts["num_steps"] = int(config.num_steps)
    if config.carry_steps:
        opts["carry_steps"] = int(config.carry_steps)
    if kind in ("nano", "checkpoint"):
        if config.norm_tag:
            opts["norm_tag"] = config.norm_tag
        if config.depth_reasoning:
            opts["depth_reasoning"] = True
    if config.action_mode == "discrete":
        from molmoact2.training.nano_trainer import DEFAULT_ACTION_TOKENIZER  # what Nano's OpenFAST ids index

        opts.update(mode="discrete", action_tokenizer=str(DEFAULT_ACTION_TOKENIZER),
                    constrain_action_tokens=config.constrain_action_tokens)
    if config.compiled:
        opts["compiled"] = True
    if kind == "checkpoint":
        opts["trust_remote_code"] = config.trust_remote_code
    policy = load_policy(config.policy_spec.strip(), **opts)
    meta = getattr(policy, "meta", {}) if config.carry_steps else {}
    if meta and int(meta.get("n_action_steps") or 0) >= int(meta.get("action_horizon") or 30):
        # Carrying pins the next chunk to the unexecuted rest of the plan: a checkpoint that executes its whole
        # plan (the shipped Nano since 2026-12-05) has none, so the option would do nothing; say so instead.
        raise ValueError(f"Carry steps: this checkpoint executes its whole plan per query (n_action_steps "
                         f"{meta.get('n_action_steps')} of {meta.get('action_horizon')}), so nothing is left to carry "
                         f"over; set Carry steps to 0")
    return policy


def annotate_step(step: Step, env: Any) -> None:
    """Fill what a viewer needs and the policy could not know: the env's action names/units, the planned
    end-effector path of the chunk (forward kinematics) and, for flow-matching policies, the 3-D path of
    every denoising state. Nothing is drawn for a chunk that is not finite and of the env's dimension."""
    actions = None if step.actions is None else np.asarray(step.actions)
    fits = actions is not None and actions.ndim == 2 and actions.shape[1] == env.action_dim and len(actions) > 0
    if fits and step.action_names is None:
        step.action_names = tuple(env.action_names)
    if fits and step.action_units is None:
        step.action_units = env.action_units
    if not (fits and np.all(np.isfinite(actions))):
        return
    if step.planned_path_world is None:
        step.planned_path_world, step.planned_path_px = env.planned_path(actions, step.observation)
    states = step.denoising_states
    if states is not None and "denoising_paths_world" not in step.info:
        states = np.asarray(states)
        if states.ndim == 3 and states.shape[2] == env.action_dim and np.all(np.isfinite(states)):
            step.info["denoising_paths_world"] = np.stack([env.planned_path(s)[0] for s in states])


class ControlSession:
    """One closed-loop episode at a time, owned by one worker thread (see the module docstring).

    `policy_factory(env) -> Policy` replaces the spec (tests, notebooks with a policy object)."""

    def __init__(self, config: ControlConfig | None = None, *,
                 policy_factory: Callable[[Any], Any] | None = None, start: bool = True) -> None:
        self.config = config or ControlConfig()
        self._policy_factory = policy_factory
        self._cmds: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._version = 0
        self._steps: list[Step] = []
        self._status = ControlStatus("empty", self.config)
        self.episode_id = 0  # +1 per reset: views start a new recording when it changes
        self.cameras: tuple[str, ...] = ()
        self.action_names: tuple[str, ...] | None = None
        self._thread = threading.Thread(target=self._loop, name="control-session", daemon=True)
        self._closed = False
        if start:
            self._thread.start()
            self.reset(self.config)

    # ---- commands (any thread) ----------------------------------------------------------------
    def reset(self, config: ControlConfig | None = None, wait: bool = True, timeout_s: float = 300.0) -> ControlStatus:
        """New episode (rebuilding the world and reloading the policy only when they changed)."""
        return self._command("reset", config or self.config, wait=wait, timeout_s=timeout_s)

    def step(self, wait: bool = True, timeout_s: float = 300.0) -> ControlStatus:
        """Exactly one chunk, then paused."""
        return self._command("step", None, wait=wait, timeout_s=timeout_s)

    def run(self) -> ControlStatus:
        """Chunks until the episode ends or `pause()`; returns at once (see `wait_stopped`)."""
        return self._command("run", None, wait=True, timeout_s=30.0)

    def pause(self, wait: bool = False, timeout_s: float = 300.0) -> ControlStatus:
        """Stop after the chunk in progress."""
        return self._command("pause", None, wait=wait, timeout_s=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        if not self._closed and self._thread.is_alive():
            self._closed = True
            self._cmds.put(("close", None, None))
            self._thread.join(timeout_s)
        self._closed = True

    def _command(self, name: str, arg: Any, *, wait: bool, timeout_s: float) -> ControlStatus:
        if self._closed or not self._thread.is_alive():
            raise RuntimeError("ControlSession is closed; create a new one")
        done = threading.Event()
        self._cmds.put((name, arg, done))
        if wait and not done.wait(timeout_s):
            raise TimeoutError(f"ControlSession.{name}: not done after {timeout_s} s ({self.status()})")
        return self.status()

    # ---- observing (any thread) -------------------------------------------------------------------
    def status(self) -> ControlStatus:
        with self._cond:
            return self._status

    @property
    def steps(self) -> list[Step]:
        with self._cond:
            return list(self._steps)

    def snapshot(self) -> tuple[int, list[Step], tuple[str, ...], tuple[str, ...] | None]:
        """(episode_id, steps, cameras, action_names), read together: what a viewer feed needs."""
        with self._cond:
            return self.episode_id, list(self._steps), self.cameras, self.action_names

    def wait_for_update(self, seen_version: int, timeout_s: float = 1.0) -> int:
        """Block until something changed after `seen_version` (a Step, a state change) or the timeout;
        return the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen_version, timeout=timeout_s)
            return self._version

    def wait_stopped(self, timeout_s: float = 300.0) -> ControlStatus:
        """Block until the session is not running (paused, done, error)."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._status.running, timeout=timeout_s):
                raise TimeoutError(f"ControlSession still running after {timeout_s} s ({self._status})")
            return self._status

    # ---- the worker ------------------------------------------------------------------------------
    def _set(self, **changes: Any) -> None:
        with self._cond:
            self._status = replace(self._status, **changes)
            self._version += 1
            self._cond.notify_all()

    def _loop(self) -> None:
        self._env = self._policy = self._episode = None
        self._built: tuple | None = None
        self._policy_key: tuple | None = None
        self._world_gen = 0
        self._mode = "idle"
        try:
            while True:
                if self._mode == "running":
                    try:
                        name, arg, done = self._cmds.get_nowait()
                    except queue.Empty:
                        self._advance()
                        continue
                else:
                    name, arg, done = self._cmds.get()
                try:
                    if name == "close":
                        return
                    if name == "reset":
                        self._do_reset(arg)
                    elif name == "run":
                        if self._episode is not None:
                            self._mode = "running"
                            self._set(state="running")
                    elif name == "pause":
                        if self._mode == "running":
                            self._mode = "paused"
                            self._set(state="paused")
                    elif name == "step":
                        if self._episode is not None:
                            self._set(state="running")
                            self._advance()
                            if self._episode is not None:
                                self._set(state="paused")
                finally:
                    if done is not None:
                        done.set()
        finally:
            if self._policy is not None and hasattr(self._policy.inner, "close"):
                self._policy.inner.close()  # e.g. RemotePolicy's HTTP connection pool
            self._close_world()

    def _close_world(self) -> None:
        from molmoact2.sim.render import release_thread_gl_contexts

        self._episode = None
        if self._env is not None:
            self._env.close()
            self._env = None
        release_thread_gl_contexts()  # this thread's EGL contexts would otherwise leak

    def _do_reset(self, config: ControlConfig) -> None:
        from molmoact2.runner import guard_for_env, run_episode
        from molmoact2.sim import make_env
        from molmoact2.sim.progress import ProgressWatch

        self.config = config
        self._mode = "idle"
        self._episode = None
        with self._cond:
            self._steps = []
            self.episode_id += 1
            self.cameras, self.action_names = (), None
        self._set(state="loading", config=config, policy_name="", chunks=0, ticks=0, refusals=0, clipped_targets=0,
                  refusal_messages=(), success=False, stopped_by=None, loop_hz=None, last_predict_ms=None, error=None, instruction="",
                  target_options=(), progress="", grammar_changed=0)
        try:
            world_key = (config.task, config.image_size, config.depth)
            if self._built != world_key:
                self._close_world()
                self._env = make_env(config.task, seed=config.seed, image_size=config.image_size, depth=config.depth,
                                     segmentation=False)
                self._built = world_key
                self._world_gen += 1
            # Reload only when something that defines the model changed (the expert is bound to its world);
            # every option make_control_policy passes belongs here, or a reset would keep the old policy.
            bound = self._world_gen if control_spec_kind(config.policy_spec) == "expert" else None
            policy_key = (config.policy_spec.strip(), config.trust_remote_code, config.norm_tag,
                          config.depth_reasoning, config.num_steps, config.carry_steps, config.action_mode,
                          config.constrain_action_tokens, bound)
            if self._policy_factory is not None:
                policy = self._policy_factory(self._env)
                self._policy = _TimedPolicy(policy)
            elif self._policy_key != policy_key:
                if self._policy is not None and hasattr(self._policy.inner, "close"):
                    self._policy.inner.close()
                self._policy, self._policy_key = None, None
                self._policy = _TimedPolicy(make_control_policy(config, self._env))
                self._policy_key = policy_key
            env = self._env
            self._guard = guard_for_env(env, on_limit=config.on_limit)
            self._summary: dict[str, Any] = {}
            # Reset here rather than inside run_episode, so the instruction and cameras are known before the
            # first chunk; the episode then continues from this state (reset=False).
            env.reset(config.seed)
            self._set(target_options=tuple(env.target_options()))  # shown even when the name below is not one
            if config.target.strip():
                env.reset(config.seed, options={"target": config.target.strip()})
            self._policy.reset()
            self._watch = ProgressWatch(env)  # watches the named object at every tick the episode runs
            self._episode = run_episode(self._policy, self._watch, self._guard, max_steps=config.max_steps,
                                        reset=False, summary=self._summary)
            self._busy_s = 0.0
            with self._cond:
                self.cameras, self.action_names = tuple(env.cameras), tuple(env.action_names)
            self._set(state="ready", policy_name=self._policy.name, instruction=env.instruction,
                      time_limit_steps=int(config.max_steps or env.time_limit_steps))
        except Exception as exc:  # a bad spec, a missing checkpoint, an unreachable server: shown, not raised
            self._episode = None
            self._set(state="error", error=f"{type(exc).__name__}: {exc}")

    def _advance(self) -> None:
        """One chunk: next(run_episode) = predict -> guard -> execute; then annotate and publish the Step."""
        t0 = time.perf_counter()
        try:
            step = next(self._episode)
        except StopIteration:  # the episode ended on the previous chunk
            self._finish()
            return
        except Exception as exc:  # the policy failed (server down, bad input): the episode cannot go on
            self._episode, self._mode = None, "idle"
            self._set(state="error", error=f"{type(exc).__name__}: {exc}")
            return
        wall_ms = (time.perf_counter() - t0) * 1e3
        self._busy_s += wall_ms / 1e3
        predict_ms = self._policy.last_ms
        step.timings_ms["loop_predict_ms"] = predict_ms
        step.timings_ms["loop_execute_ms"] = max(wall_ms - predict_ms, 0.0)  # guard + sim ticks + rendering
        ep = step.info["episode"]
        step.info["policy_index"] = step.index
        step.index = int(ep["env_step_start"])  # one timeline for every backend: env ticks
        try:
            annotate_step(step, self._env)
        except Exception as exc:  # a drawing problem must not hide the control result
            step.info["annotate_error"] = f"{type(exc).__name__}: {exc}"
        safety = step.info.get("safety", {})
        new_refusals = tuple(f"chunk {ep['chunk']}: [{r['rule']}] {r['message']}"
                             for r in safety.get("records", []) if r.get("action") == "refused")
        with self._cond:
            self._steps.append(step)
        st = self.status()
        ticks = st.ticks + int(step.n_executed or 0)
        clips = sum(1 for r in safety.get("records", []) if r.get("action") == "clipped")
        self._set(chunks=st.chunks + 1, ticks=ticks, refusals=st.refusals + (1 if safety.get("refused") else 0),
                  clipped_targets=st.clipped_targets + clips,
                  refusal_messages=st.refusal_messages + new_refusals, success=bool(ep["success"]),
                  stopped_by=ep["stopped_by"], loop_hz=ticks / self._busy_s if self._busy_s > 0 else None,
                  last_predict_ms=predict_ms, last_stages_ms=model_stages(step.timings_ms),
                  progress=self._watch.describe(),
                  grammar_changed=st.grammar_changed + bool(step.info.get("action_grammar_overrides")))
        if ep["stopped_by"] is not None:
            self._finish()

    def _finish(self) -> None:
        self._episode, self._mode = None, "idle"
        self._set(state="done")


STAGE_NAMES = {"prepare_ms": "prepare", "vision_ms": "vision", "prefill_ms": "prefill", "depth_ms": "depth",
               "action_expert_ms": "action expert", "discrete_decode_ms": "discrete decode",
               "server_dt_ms": "server", "network_ms": "network"}


def model_stages(timings_ms: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """The stages a backend reported, in pipeline order (the expert and /act servers report fewer)."""
    return tuple((STAGE_NAMES[k], float(timings_ms[k])) for k in STAGE_NAMES if k in timings_ms)


def format_status(st: ControlStatus) -> str:
    """The status line: state, loop rate, chunks, ticks, refusals (with their messages), outcome."""
    c = st.config
    head = f"`{c.task}` · seed {c.seed} · policy `{st.policy_name or c.policy_spec}`"
    if c.num_steps is not None:
        head += f" · {c.num_steps} Euler steps"
    if c.carry_steps:
        head += f" · carries {c.carry_steps} actions over"
    if c.action_mode == "discrete":
        head += " · discrete (OpenFAST" + (", length grammar)" if c.constrain_action_tokens else ", free decode)")
    if st.instruction:
        head += f" · **{st.instruction}**"
    if st.target_options:
        head += " · objects it can name: " + ", ".join(f"`{n}`" for n in st.target_options)
    if st.state == "error":
        return f"{head}\n\n❌ **Error:** {st.error}"
    if st.state in ("empty", "loading"):
        return f"{head} — loading…"
    hz = f"{st.loop_hz:.1f} Hz" if st.loop_hz else "—"
    pred = f"{st.last_predict_ms:.1f} ms" if st.last_predict_ms is not None else "—"
    limit = f" / {st.time_limit_steps}" if st.time_limit_steps else ""
    outcome = {"success": "**success** ✅", "time_limit": "**time-out** ⏱", "max_steps": "**step limit reached** ⏱",
               "refused": "**stopped: safety refusal** 🛑", "estop": "**stopped: e-stop** 🛑"}.get(st.stopped_by or "", "")
    state = {"ready": "**ready** — press run or step", "running": "**running…**", "paused": "**paused**",
             "done": f"done — {outcome or st.stopped_by}"}.get(st.state, f"**{st.state}**")
    line = (f"{head}\n\n{state} · loop rate {hz} · chunks executed {st.chunks} · ticks {st.ticks}{limit} · "
            f"last predict {pred} · safety refusals {st.refusals} · targets clipped {st.clipped_targets}")
    if c.constrain_action_tokens:
        line += f" · length grammar changed {st.grammar_changed} of {st.chunks} chunks"
    if st.progress:
        line += f"\n\nnamed object: {st.progress}"
    if st.last_stages_ms:
        line += "\n\nlast predict by stage: " + " · ".join(f"{name} {ms:.1f} ms" for name, ms in st.last_stages_ms)
    if st.refusal_messages:
        line += "\n\n" + "\n".join(f"- 🛑 refused {m}" for m in st.refusal_messages[-5:])
    return line
