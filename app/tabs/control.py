"""Control: a policy in closed loop in the simulator — pick the model (expert, Nano, a checkpoint, an /act
server) and check it, then run / step / pause / reset; optionally name another object of the same scene. Every chunk goes through the safety guard; the
live viewer shows cameras, the planned path, the chunk per joint, depth codes and denoising states when
the policy gives them, and latency per stage; the status line has the loop rate and every refusal.

All the logic is in `molmoact2.control_session`: one `ControlSession` per browser session (a worker
thread owns the MuJoCo world, whose EGL context belongs to one thread); these callbacks send it
commands and move its recording into the viewer.
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

from app.main import AppContext

TITLE = "Control"
IMAGE_SIZE = 224
_FEEDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # session -> its viewer feed (dies with it)


def _viewer_bytes(session) -> bytes | None:
    from molmoact2.viz.feed import StepFeed

    feed = _FEEDS.get(session)
    if feed is None:
        feed = _FEEDS[session] = StepFeed()
    return feed.pull(*session.snapshot())


def _flow_steps(value) -> int | None:
    """The Euler-steps box: 0 or blank means the model's own setting (a cleared number box arrives as 0);
    anything else must be a whole number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"not a whole number: {value}")
    return int(number) or None


# The Actions radio: (label, value); a value names ControlConfig's action_mode and constrain_action_tokens.
ACTION_CHOICES = (("continuous (flow expert)", "continuous"), ("discrete (OpenFAST, free decode)", "discrete"),
                  ("discrete (OpenFAST, length grammar)", "discrete_grammar"))


def _config(spec, task, seed, on_limit, trust, think, target="", flow_steps=None, carry=None, actions="continuous",
            compiled=False):
    from molmoact2.control_session import ControlConfig

    actions = actions or "continuous"
    return ControlConfig(policy_spec=str(spec or "").strip(), task=task, seed=int(seed), image_size=IMAGE_SIZE,
                         on_limit=on_limit, trust_remote_code=bool(trust), depth_reasoning=bool(think),
                         target=str(target or "").strip(), num_steps=_flow_steps(flow_steps),
                         carry_steps=_flow_steps(carry) or 0,
                         action_mode="continuous" if actions == "continuous" else "discrete",
                         constrain_action_tokens=actions == "discrete_grammar", compiled=bool(compiled))


def _ensure(session, cfg):
    """The session for `cfg`: reused while its settings match and the episode is not over."""
    from molmoact2.control_session import ControlSession

    if session is None:
        return ControlSession(cfg)
    if session.config != cfg or session.status().state in ("done", "error"):
        session.reset(cfg)
    return session


def _bad_input(task, seed, flow_steps=None, carry=None, actions="continuous") -> str | None:
    from molmoact2.models.act_protocol import MAX_NUM_STEPS
    from molmoact2.sim import task_names

    if task not in task_names():
        return f"**Unknown task** `{task}`; valid: {', '.join(task_names())}"
    try:
        int(seed)
    except (TypeError, ValueError):
        return f"**Seed** must be an integer, got `{seed}`"
    try:
        steps = _flow_steps(flow_steps)
    except (TypeError, ValueError):
        steps = 0
    if steps is not None and not 1 <= steps <= MAX_NUM_STEPS:
        return (f"**Euler steps** must be 0 (the model's own) or a whole number 1–{MAX_NUM_STEPS}, "
                f"got `{flow_steps}`")
    try:
        kept = _flow_steps(carry) or 0
    except (TypeError, ValueError):
        kept = -1
    if not 0 <= kept < 30:
        return f"**Carry steps** must be 0 (off) or a whole number 1–29 (of the 30-action chunk), got `{carry}`"
    if (actions or "continuous") not in [value for _, value in ACTION_CHOICES]:
        return f"**Actions** must be one of {', '.join(v for _, v in ACTION_CHOICES)}, got `{actions}`"
    return None


def _save(session) -> str | None:
    from molmoact2.viz.logger import save_rrd

    steps = session.steps
    if not steps:
        return None
    c = session.config
    directory = Path(tempfile.mkdtemp(prefix="mact2-control-"))
    return str(save_rrd(steps, directory / f"control_{c.task}_seed{c.seed}.rrd"))


def check_model(spec, trust):
    from molmoact2.control_session import check_spec, format_health

    return format_health(check_spec(spec, trust_remote_code=bool(trust), for_actions=True))


def run_policy(session, spec, task, seed, on_limit, trust, think, target="", flow_steps=None, carry=None,
               actions="continuous", compiled=False):
    """Generator: (session, viewer bytes, status, download) until the episode ends or is paused."""
    from molmoact2.control_session import format_status

    bad = _bad_input(task, seed, flow_steps, carry, actions)
    if bad:
        yield session, None, bad, None
        return
    cfg = _config(spec, task, seed, on_limit, trust, think, target, flow_steps, carry, actions, compiled)
    session = _ensure(session, cfg)
    st = session.status()
    if st.state == "error":
        yield session, None, format_status(st), None
        return
    session.run()
    version = -1
    while True:
        version = session.wait_for_update(version, timeout_s=0.5)
        st = session.status()
        yield session, _viewer_bytes(session), format_status(st), None
        if not st.running:
            break
    yield session, _viewer_bytes(session), format_status(session.status()), _save(session)


def step_policy(session, spec, task, seed, on_limit, trust, think, target="", flow_steps=None, carry=None,
                actions="continuous", compiled=False):
    """Generator (one yield): the streaming viewer takes its bytes from generators only."""
    from molmoact2.control_session import format_status

    bad = _bad_input(task, seed, flow_steps, carry, actions)
    if bad:
        yield session, None, bad, None
        return
    cfg = _config(spec, task, seed, on_limit, trust, think, target, flow_steps, carry, actions, compiled)
    session = _ensure(session, cfg)
    if session.status().state != "error":
        session.step()
    yield session, _viewer_bytes(session), format_status(session.status()), _save(session)


def pause_policy(session):
    from molmoact2.control_session import format_status

    if session is None:
        return "Nothing is running."
    session.pause()
    return format_status(session.status()) + "\n\n*pause requested: stopping after the chunk in progress*"


def reset_policy(session, spec, task, seed, on_limit, trust, think, target="", flow_steps=None, carry=None,
                 actions="continuous", compiled=False):
    from molmoact2.control_session import ControlSession, format_status

    bad = _bad_input(task, seed, flow_steps, carry, actions)
    if bad:
        return session, bad, None
    cfg = _config(spec, task, seed, on_limit, trust, think, target, flow_steps, carry, actions, compiled)
    if session is None:
        session = ControlSession(cfg)
    else:
        session.reset(cfg)
    return session, format_status(session.status()), None


def _close(session) -> None:
    if session is not None:
        session.close()


def build(ctx: AppContext) -> None:
    import gradio as gr
    from gradio_rerun import Rerun

    from molmoact2.control_session import default_control_spec, nano_note
    from molmoact2.sim import task_names

    gr.Markdown(
        "Run a policy in closed loop in the simulator. Each chunk is predicted, checked by the **safety guard** "
        "(joint limits, NaN, dimensions, chunk length) and executed; a refused chunk executes nothing and is listed "
        "below. **Model**: `expert` (the scripted expert), `nano`, `nano:DIR`, a local checkpoint directory, or an "
        "`http://host:port` /act server — press **Check** to test it before running. **Object to name** keeps the "
        "seed's scene and names another of its objects in the instruction: does the policy follow the words? "
        "**Euler steps** sets how many denoising steps a flow-matching model takes (0: its own): "
        "fewer is faster, the viewer draws one denoising state per step. **Carry steps** (Nano only; 0: off) pins "
        "each chunk's first actions to the previous plan's, so chunks continue one another instead of each "
        "drawing its own mode (watch the gripper). **Actions** (Nano): the flow expert, or OpenFAST tokens decoded "
        "freely as the real model does (about half of Nano's chunks then fail to decode: the episode stops with "
        "the error) or under the tokenizer's length grammar (every chunk decodes; the status counts the chunks it "
        "had to change). **compiled** (Nano) runs vision, prefill and the flow expert through torch.compile: the "
        "same chunks, faster calls, after the first chunk compiles (20–30 s); `nano-fast` is Nano with a 2-step "
        "flow expert, the fastest continuous call (README, Benchmarks).\n\n"
        + nano_note(),
        elem_id="ctl-intro",
    )
    session = gr.State(None, delete_callback=_close)
    with gr.Row():
        spec = gr.Textbox(value=default_control_spec(), label="Model (spec)", elem_id="ctl-spec", scale=3)
        trust = gr.Checkbox(value=False, label="trust the checkpoint's own code", elem_id="ctl-trust")
        think = gr.Checkbox(value=False, label="depth reasoning (Think)", elem_id="ctl-think")
        flow_steps = gr.Number(value=0, label="Euler steps (0: the model's own)", elem_id="ctl-flow-steps")
        carry = gr.Number(value=0, label="Carry steps (Nano; 0: off)", elem_id="ctl-carry")
        actions = gr.Radio(list(ACTION_CHOICES), value="continuous", label="Actions", elem_id="ctl-actions")
        compiled = gr.Checkbox(value=False, label="compiled (Nano; the first chunk compiles, 20–30 s)",
                               elem_id="ctl-compiled")
        check = gr.Button("Check", elem_id="ctl-check")
    health = gr.Markdown("Model not checked yet.", elem_id="ctl-health")
    with gr.Row():
        task = gr.Dropdown(task_names(), value="touch", label="Task", elem_id="ctl-task")
        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="ctl-seed")
        # clip (each clip is recorded) by default: the scripted expert drives wrist_flex to its limit, so a model
        # trained on its demos lands a few units past it; "refuse" ends the episode on such a chunk instead.
        on_limit = gr.Radio(["clip", "refuse"], value="clip", label="Targets outside the joint limits",
                            elem_id="ctl-on-limit")
        target = gr.Textbox(value="", label="Object to name (blank: the seed's own)", elem_id="ctl-target",
                            placeholder="e.g. red cube: same scene, other words")
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="ctl-run")
        step = gr.Button("Step", elem_id="ctl-step")
        pause = gr.Button("Pause", elem_id="ctl-pause")
        reset = gr.Button("Reset", elem_id="ctl-reset")
    status = gr.Markdown("Choose a model and a task, then **Run** or **Step**.", elem_id="ctl-status")
    viewer = Rerun(streaming=True, height=620, label="Rerun viewer", elem_id="ctl-viewer")
    download = gr.File(label="Recording (.rrd)", interactive=False, elem_id="ctl-download")

    inputs = [session, spec, task, seed, on_limit, trust, think, target, flow_steps, carry, actions, compiled]
    check.click(check_model, inputs=[spec, trust], outputs=[health])
    run.click(run_policy, inputs=inputs, outputs=[session, viewer, status, download])
    step.click(step_policy, inputs=inputs, outputs=[session, viewer, status, download])
    pause.click(pause_policy, inputs=[session], outputs=[status])
    reset.click(reset_policy, inputs=inputs, outputs=[session, status, download])
