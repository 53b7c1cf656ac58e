"""The Control tab's library part on a real MuJoCo world: run / step / pause / reset semantics with the
scripted expert, a NaN-emitting policy refused by the safety guard (visible in status and Step), and a
tiny Nano behind our /act server (real uvicorn on 127.0.0.1) driving the loop through RemotePolicy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from molmoact2.control_session import (ControlConfig, ControlSession, check_spec, format_health, format_status)
from molmoact2.models.base import Step
from molmoact2.runner import ExpertPolicy
from molmoact2.viz.feed import StepFeed
from molmoact2.viz.logger import save_rrd

FAST = dict(image_size=64, depth=False)  # small renders: the semantics do not depend on image size


class Gated:
    """The expert, but each predict waits for a permit: the test decides when every chunk may happen."""

    def __init__(self, env) -> None:
        self.inner, self.name = ExpertPolicy(env), "gated-expert"
        self.permits = threading.Semaphore(0)
        self.entered = 0
        self.cond = threading.Condition()

    def reset(self) -> None:
        self.inner.reset()

    def predict(self, obs):
        with self.cond:
            self.entered += 1
            self.cond.notify_all()
        if not self.permits.acquire(timeout=60):
            raise TimeoutError("test gate: no permit within 60 s")
        return self.inner.predict(obs)

    def wait_entered(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.entered >= n, timeout=60), f"predict #{n} never started"


def test_step_run_pause_reset_with_the_expert():
    gates: list[Gated] = []

    def factory(env):
        gates.append(Gated(env))
        return gates[-1]

    session = ControlSession(ControlConfig(task="pick_place", seed=1, **FAST), policy_factory=factory)
    try:
        st = session.status()
        assert st.state == "ready" and st.chunks == 0 and st.instruction
        gate = gates[-1]

        # step: exactly one chunk, then paused
        gate.permits.release()
        st = session.step()
        assert st.state == "paused" and st.chunks == 1 and st.ticks > 0 and st.refusals == 0
        assert len(session.steps) == 1 and session.steps[0].n_executed == st.ticks
        # the named object is watched at every tick: one chunk in, the expert is still on its way
        assert st.progress.startswith("has not touched the ") and "not in the bin yet" in st.progress, st.progress

        # run, then pause while chunk 3 is being predicted: the pause lands after that chunk
        session.run()
        gate.permits.release()
        gate.wait_entered(3)  # chunk 2 done, the worker waits inside chunk 3's predict
        session.pause()
        gate.permits.release()
        st = session.wait_stopped(timeout_s=60)
        assert st.state == "paused" and st.chunks == 3, format_status(st)
        assert st.loop_hz and st.loop_hz > 0 and "loop rate" in format_status(st)
        ticks_paused = st.ticks
        assert ticks_paused == sum(s.n_executed for s in session.steps)

        # step from paused: one more chunk
        gate.permits.release()
        st = session.step()
        assert st.state == "paused" and st.chunks == 4 and st.ticks > ticks_paused

        # the live viewer feed gets every Step of this episode, then a new recording after the reset
        feed = StepFeed()
        rrd = feed.pull(*session.snapshot())
        assert rrd and rrd[:4] in (b"RRF2", b"RRF0") and feed.logged == 4
        assert feed.pull(*session.snapshot()) is None  # nothing new

        # reset: back to chunk 0 of the same seed; then run to the end
        st = session.reset()
        assert st.state == "ready" and st.chunks == 0 and st.ticks == 0 and session.steps == []
        assert feed.pull(*session.snapshot()) is None  # the new episode has no Step yet
        gate = gates[-1]
        gate.permits.release(200)
        session.run()
        st = session.wait_stopped(timeout_s=120)
        assert st.state == "done" and st.success and st.stopped_by == "success", format_status(st)
        assert "success" in format_status(st) and f"chunks executed {st.chunks}" in format_status(st)
        # ... and at the end it has been touched, lifted and dropped in the bin, in that order
        import re

        ticks = [int(t) for t in re.findall(r"tick (\d+)", st.progress)]
        assert len(ticks) == 3 and ticks == sorted(ticks) and ticks[-1] <= st.ticks, st.progress
        assert st.progress.startswith("touched the ") and "named object: touched" in format_status(st)
        steps = session.steps
        assert [s.index for s in steps] == sorted({s.index for s in steps})  # one timeline: env ticks
        assert all(s.planned_path_world is not None and s.timings_ms["loop_execute_ms"] >= 0 for s in steps)
        rrd = feed.pull(*session.snapshot())
        assert rrd[:4] in (b"RRF2", b"RRF0") and feed.logged == len(steps)  # a fresh recording of this episode
        feed.close()
    finally:
        session.close()


class NaNAfter:
    """The expert, with a NaN in the chunk of call `bad` (a policy gone wrong)."""

    def __init__(self, env, bad: int = 1) -> None:
        self.inner, self.bad, self.calls, self.name = ExpertPolicy(env), bad, 0, "nan-policy"

    def reset(self) -> None:
        self.inner.reset()
        self.calls = 0

    def predict(self, obs):
        step = self.inner.predict(obs)
        self.calls += 1
        if self.calls - 1 == self.bad:
            actions = np.array(step.actions, np.float32)
            actions[2, 3] = np.nan
            return Step(backend=self.name, observation=obs, actions=actions)
        return step


def test_nan_policy_is_refused_and_shown(tmp_path):
    session = ControlSession(ControlConfig(task="pick_place", seed=0, **FAST), policy_factory=NaNAfter)
    try:
        session.run()
        st = session.wait_stopped(timeout_s=60)
        text = format_status(st)
        assert st.state == "done" and st.stopped_by == "refused" and st.refusals == 1 and not st.success
        assert st.chunks == 2 and "safety refusals 1" in text and "[finite]" in text and "non-finite" in text
        refused = session.steps[-1]
        assert refused.info["safety"]["refused"] and refused.n_executed == 0
        assert refused.info["safety"]["records"][0]["rule"] == "finite"
        assert refused.planned_path_world is None  # nothing drawn for a chunk that is not finite
        assert st.ticks == session.steps[0].n_executed  # the refused chunk executed nothing
        path = save_rrd(session.steps, tmp_path / "nan.rrd")  # the refused chunk is in the recording too
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] in (b"RRF2", b"RRF0")
    finally:
        session.close()


def test_bad_specs_are_errors_in_words():
    assert check_spec("expert").ok
    assert not check_spec("").ok
    h = check_spec("http://127.0.0.1:9")  # discard port: nothing listens
    assert not h.ok and "cannot reach" in h.message and format_health(h).startswith("❌ **error**")
    h = check_spec("/no/such/checkpoint")
    assert not h.ok and "does not exist" in h.message
    # the spatial specialist is refused by name in the loop (it would run, badly), before anything loads
    from molmoact2.control_session import make_control_policy

    with pytest.raises(ValueError, match="'nano-er' is the spatial-question specialist.*Use 'nano'"):
        make_control_policy(ControlConfig(policy_spec=" Nano-ER ", task="touch", **FAST), env=None)
    # ... and the Control tab's Check says so too, while the Spatial tab's check (no for_actions) accepts it
    h = check_spec(" Nano-ER ", for_actions=True)
    assert not h.ok and "spatial-question specialist" in h.message and "Use 'nano'" in h.message
    assert check_spec("nano-er").ok
    session = ControlSession(ControlConfig(policy_spec="nano:/no/such/dir", task="touch", **FAST))
    try:
        st = session.status()
        assert st.state == "error" and "does not exist" in st.error and "Error" in format_status(st)
        st = session.reset(ControlConfig(policy_spec="expert", task="touch", **FAST))  # recovers
        assert st.state == "ready"
    finally:
        session.close()


def test_naming_another_object_of_the_layout():
    """Same seed, other words: the instruction names the chosen object and the expert goes there; a name the
    layout does not have is an error that lists the ones it has."""
    session = ControlSession(ControlConfig(policy_spec="expert", task="touch", seed=10000, **FAST))
    try:
        st = session.status()
        own = st.instruction
        others = [n for n in st.target_options if n not in own]
        assert st.state == "ready" and len(st.target_options) == 3 and len(others) == 2
        assert all(f"`{n}`" in format_status(st) for n in st.target_options)
        st = session.reset(ControlConfig(policy_spec="expert", task="touch", seed=10000, target=others[0], **FAST))
        assert st.state == "ready" and others[0] in st.instruction and st.instruction != own
        session.run()
        st = session.wait_stopped(timeout_s=120)
        assert st.state == "done" and st.success, format_status(st)
        st = session.reset(ControlConfig(policy_spec="expert", task="touch", seed=10000, target="golden teapot", **FAST))
        assert st.state == "error" and "golden teapot" in st.error and others[1] in st.error
        assert "Error" in format_status(st)
    finally:
        session.close()


@pytest.fixture(scope="module")
def nano_server():
    import torch

    from molmoact2.models.act_protocol import get_schema
    from molmoact2.models.nano.factory import build_random_nano
    from molmoact2.models.nano.policy import NanoPolicy
    from molmoact2.serve.app import ServerThread, build_app

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine: one thread is faster
    model, processor = build_random_nano("tiny", seed=0)
    policy = NanoPolicy(model, processor, depth_reasoning=True, seed=0)
    server = ServerThread(build_app(policy, get_schema("so101"))).start()
    yield server
    server.stop()
    torch.set_num_threads(before)


def test_remote_nano_through_the_loop(nano_server):
    h = check_spec(nano_server.url)
    assert h.ok and h.details["norm_tag"] == "so101_sim_molmoact2" and h.details["schema"] == "so101"
    assert h.round_trip_ms is not None and "norm_tag `so101_sim_molmoact2`" in format_health(h)
    # Random weights: targets may leave the joint range, so clip them (the guard records every clip).
    cfg = ControlConfig(policy_spec=nano_server.url, task="touch", seed=0, on_limit="clip", max_steps=60, **FAST)
    session = ControlSession(cfg)
    try:
        assert session.status().state == "ready", format_status(session.status())
        st = session.step()
        assert st.chunks == 1 and st.ticks > 0 and st.refusals == 0, format_status(st)
        st = session.step()
        assert st.chunks == 2 or st.state == "done", format_status(st)
        step = session.steps[0]
        assert step.backend == "remote" and step.actions.shape[1] == 6
        assert step.depth_bins is not None and step.depth_update_mask is not None  # Think via the /act extras
        assert step.planned_path_world is not None and step.planned_path_world.shape == (len(step.actions), 3)
        assert "round_trip_ms" in step.timings_ms and "server_dt_ms" in step.timings_ms
        assert step.action_names is not None and st.policy_name.startswith("remote:")
    finally:
        session.close()


def test_euler_steps_reach_the_model_and_bad_values_are_refused(tmp_path):
    """The Control tab's Euler-steps box: a number reaches the flow expert (one denoising state per step), 0 or
    blank keeps the model's own; the expert (no flow) and out-of-range or fractional values are refused in words."""
    from app.tabs.control import _bad_input, _config
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    base = dict(policy_spec=f"nano:{ckpt}", task="touch", on_limit="clip", max_steps=20, **FAST)
    for steps, states in ((3, 4), (None, 11)):  # the random checkpoint's own setting is 10
        session = ControlSession(ControlConfig(num_steps=steps, **base))
        try:
            st = session.step()
            assert st.chunks == 1, format_status(st)
            assert session.steps[0].denoising_states.shape[0] == states
        finally:
            session.close()
    # one session, as the tab keeps it: a reset with another number must reach the model (it did not: the
    # loaded policy was reused whenever the spec was the same)
    session = ControlSession(ControlConfig(num_steps=3, **base))
    try:
        for steps, states in ((3, 4), (None, 11), (2, 3)):
            session.reset(ControlConfig(num_steps=steps, **base))
            st = session.step()
            assert st.chunks == 1 and session.steps[0].denoising_states.shape[0] == states, (steps, format_status(st))
    finally:
        session.close()
    for cfg, words in ((ControlConfig(num_steps=0, **base), "expected 1..100"),
                       (ControlConfig(policy_spec="expert", task="touch", num_steps=3, **FAST), "set Euler steps to 0")):
        session = ControlSession(cfg)
        try:
            st = session.status()
            assert st.state == "error" and words in st.error, format_status(st)
        finally:
            session.close()
    assert _bad_input("touch", 0, None) is None and _bad_input("touch", 0, "") is None and _bad_input("touch", 0, 0) is None
    assert _config("nano", "touch", 0, "clip", False, False, "", 4.0).num_steps == 4
    assert _config("nano", "touch", 0, "clip", False, False, "", 0).num_steps is None
    for bad in (2.5, -1, 101, "many"):
        assert "**Euler steps** must be 0" in _bad_input("touch", 0, bad), bad


def test_carry_steps_reach_nano_only_and_the_steps_say_what_was_carried(tmp_path):
    """The Control tab's Carry-steps box: Nano pins each chunk's first actions to the previous plan's (Step.info
    says how many, from the second chunk on); another value after a reset reaches the model; the expert and bad
    values are refused in words."""
    from app.tabs.control import _bad_input, _config
    from molmoact2.models.nano.factory import make_random_checkpoint

    from molmoact2.models.nano.factory import default_norm_stats

    # executing 15 of 30 leaves a rest of each plan to carry (a checkpoint executing its whole plan is refused below)
    ckpt = make_random_checkpoint(tmp_path / "nano_random", norm_stats=default_norm_stats(30, n_action_steps=15))
    # pick_place: a random model's noisy chunks never finish it in two chunks (a touch can end `touch` at once)
    base = dict(policy_spec=f"nano:{ckpt}", task="pick_place", on_limit="clip", max_steps=45, **FAST)
    session = ControlSession(ControlConfig(carry_steps=5, **base))
    try:
        for carry in (5, 0):
            session.reset(ControlConfig(carry_steps=carry, **base))
            session.step()
            st = session.step()
            assert st.chunks == 2, format_status(st)
            second = session.steps[1].info
            if carry:
                assert second["carry"]["steps"] in (0, 5) and "carries 5 actions over" in format_status(st)
                assert session.steps[0].info["carry"]["note"].startswith("no previous plan")
            else:
                assert "carry" not in second and "carries" not in format_status(st)
    finally:
        session.close()
    session = ControlSession(ControlConfig(policy_spec="expert", task="touch", carry_steps=3, **FAST))
    try:
        st = session.status()
        assert st.state == "error" and "set Carry steps to 0" in st.error, format_status(st)
    finally:
        session.close()
    whole = make_random_checkpoint(tmp_path / "nano_whole")  # its norm stats: 30 of 30, like the shipped Nano
    session = ControlSession(ControlConfig(policy_spec=f"nano:{whole}", task="touch", carry_steps=3, **FAST))
    try:
        st = session.status()
        assert st.state == "error" and "nothing is left to carry" in st.error, format_status(st)
    finally:
        session.close()
    assert _config("nano", "touch", 0, "clip", False, False, "", 0, 4.0).carry_steps == 4
    assert _config("nano", "touch", 0, "clip", False, False, "", 0, None).carry_steps == 0
    for bad in (2.5, -1, 30, "many"):
        assert "**Carry steps** must be 0" in _bad_input("touch", 0, 0, bad), bad


def test_discrete_actions_free_and_under_the_length_grammar(tmp_path):
    """The Control tab's Actions radio: Nano's discrete mode decodes freely (a random model's chunk fails: the
    episode stops with the decode error, never a made-up chunk) or under the OpenFAST length grammar (every chunk
    decodes; the status counts the chunks it changed); the combinations that mean nothing are refused in words."""
    from app.tabs.control import _bad_input, _config
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    base = dict(policy_spec=f"nano:{ckpt}", task="touch", on_limit="clip", max_steps=60, **FAST)
    session = ControlSession(ControlConfig(action_mode="discrete", constrain_action_tokens=True, **base))
    try:
        st = session.step()
        assert st.state != "error" and st.chunks == 1, format_status(st)
        assert session.steps[0].info["action_grammar_overrides"] > 0 and st.grammar_changed == 1
        text = format_status(st)
        assert "discrete (OpenFAST, length grammar)" in text and "length grammar changed 1 of 1 chunks" in text
        session.reset(ControlConfig(action_mode="discrete", **base))  # the same spec, free decoding: a new policy
        st = session.step()
        assert st.state == "error" and st.chunks == 0 and "expected" in st.error, format_status(st)
    finally:
        session.close()
    for cfg, words in ((dict(base, policy_spec="expert"), "drives Nano only"),
                       (dict(base, action_mode="continuous", constrain_action_tokens=True), "choose the discrete mode"),
                       (dict(base, action_mode="discrete", carry_steps=3), "set Carry steps to 0"),
                       (dict(base, action_mode="discrete", num_steps=3), "set Euler steps to 0")):
        cfg.setdefault("action_mode", "discrete")
        session = ControlSession(ControlConfig(**cfg))
        try:
            st = session.status()
            assert st.state == "error" and words in st.error, format_status(st)
        finally:
            session.close()
    c = _config("nano", "touch", 0, "clip", False, False, "", 0, 0, "discrete_grammar")
    assert c.action_mode == "discrete" and c.constrain_action_tokens
    assert _config("nano", "touch", 0, "clip", False, False).action_mode == "continuous"
    assert "**Actions** must be one of" in _bad_input("touch", 0, 0, 0, "fast")


def test_compiled_reaches_nano_only(tmp_path):
    """The Control tab's compiled box reaches the Nano policy (its name says so; the first chunk would compile, which
    tests/test_shipped_nano_fast.py runs through `NanoPolicy.predict`); the expert is refused in words."""
    from app.tabs.control import _config
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    session = ControlSession(ControlConfig(policy_spec=f"nano:{ckpt}", task="touch", compiled=True, **FAST))
    try:
        st = session.status()
        assert st.state == "ready" and st.policy_name.endswith(", compiled]"), format_status(st)
    finally:
        session.close()
    session = ControlSession(ControlConfig(policy_spec="expert", task="touch", compiled=True, **FAST))
    try:
        st = session.status()
        assert st.state == "error" and "compiled inference is a Nano option" in st.error, format_status(st)
    finally:
        session.close()
    assert _config("nano", "touch", 0, "clip", False, False, "", 0, 0, "continuous", True).compiled
    assert not _config("nano", "touch", 0, "clip", False, False).compiled
