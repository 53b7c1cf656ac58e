"""Simulator: pick a task and a seed, run the scripted expert, watch it in the embedded Rerun viewer
(cameras, depth, 3-D scene with the planned path of the current chunk, joint series), download the .rrd.

The episode runs in its own thread (MuJoCo's EGL context belongs to one thread); this callback only
moves Steps from that thread to the viewer. Everything else is in `molmoact2.sim.session`.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from pathlib import Path

from app.main import AppContext

TITLE = "Simulator"
IMAGE_SIZE = 224
STRIDE = 5  # one Step (viewer frame) every 5 control steps = 6 per simulated second


def run_simulation(task: str, seed):
    """Gradio generator: yields (rrd bytes for the viewer, status markdown, .rrd download path)."""
    from molmoact2.sim import task_names
    from molmoact2.sim.session import expert_steps
    from molmoact2.viz.logger import StepLogger, blueprint_for, new_recording, save_rrd

    if task not in task_names():
        yield None, f"**Unknown task** `{task}`; valid: {', '.join(task_names())}", None
        return
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        yield None, f"**Seed** must be an integer, got `{seed}`", None
        return
    steps_q: queue.Queue = queue.Queue(maxsize=16)
    summary: dict = {}
    error: list[BaseException] = []

    def worker() -> None:
        try:
            for step in expert_steps(task, seed, image_size=IMAGE_SIZE, stride=STRIDE, summary=summary):
                steps_q.put(step)
        except BaseException as exc:  # reported in the status line, never swallowed
            error.append(exc)
        finally:
            from molmoact2.sim.render import release_thread_gl_contexts

            release_thread_gl_contexts()  # this thread ends now; its EGL context would leak
            steps_q.put(None)

    threading.Thread(target=worker, name="sim-episode", daemon=True).start()
    rec, stream, logger, steps = None, None, None, []
    while True:
        step = steps_q.get()
        if step is None:
            break
        if rec is None:
            rec = new_recording()
            stream = rec.binary_stream()
            rec.send_blueprint(blueprint_for(step))
            logger = StepLogger(rec)
        logger.log(step)
        steps.append(step)
        status = f"**{step.info['instruction']}** — step {step.index} (seed {seed}) · running the expert…"
        yield stream.read(), status, None
    if error:
        yield None, f"**Simulation failed:** {type(error[0]).__name__}: {error[0]}", None
        return
    rec.flush()
    tail = stream.read()
    path = save_rrd(steps, Path(tempfile.mkdtemp(prefix="mact2-sim-")) / f"{task}_seed{seed}.rrd")
    verdict = "succeeded ✅" if summary.get("success") else "failed ❌"
    status = (
        f"`{task}` · seed {seed} · **{summary.get('instruction', '')}** — expert {verdict} in {summary.get('steps')} steps "
        f"({summary.get('steps', 0) / 30:.1f} s simulated; limit {summary.get('time_limit_steps')}). "
        f"Recording: {len(steps)} Steps."
    )
    yield tail, status, str(path)


def build(ctx: AppContext) -> None:
    import gradio as gr
    from gradio_rerun import Rerun

    from molmoact2.sim import task_names

    gr.Markdown(
        "A MuJoCo SO-101 tabletop (and a two-arm handover world). Choose a task and a seed — the seed fixes the "
        "layout, colours and lighting — and run the scripted expert. The viewer shows both cameras with the "
        "planned path of the current action chunk, metric depth as a 3-D point cloud, and the joint series. "
        "Actions are absolute joint targets in LeRobot units (joints −100..100, gripper 0..100), 30 Hz."
    )
    with gr.Row():
        task = gr.Dropdown(task_names(), value="pick_place", label="Task", elem_id="sim-task")
        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="sim-seed")
        run = gr.Button("Run expert", variant="primary", elem_id="sim-run")
    status = gr.Markdown("Pick a task and press **Run expert**.", elem_id="sim-status")
    viewer = Rerun(streaming=True, height=620, label="Rerun viewer", elem_id="sim-viewer")
    download = gr.File(label="Recording (.rrd)", interactive=False, elem_id="sim-download")
    run.click(run_simulation, inputs=[task, seed], outputs=[viewer, status, download])
