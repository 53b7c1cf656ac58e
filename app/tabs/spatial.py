"""Spatial reasoning: ask a model (Nano, a checkpoint, ...) a Molmo2-ER question about a simulator scene or an
uploaded image; see the answer drawn on the image, the scene's depth codes and decoded depth, and the points
lifted to 3-D in the Rerun viewer.

All the logic is in `molmoact2.spatial_session`; the model selector is the Control tab's
(`molmoact2.control_session.check_spec` / `format_health`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from app.main import AppContext

TITLE = "Spatial reasoning"
SOURCES = ("Simulator scene", "Uploaded image")


def check_model(spec):
    from molmoact2.control_session import check_spec, format_health

    health = check_spec(spec)
    text = format_health(health)
    if health.ok and health.kind in ("remote", "expert"):
        text += (f"\n\n⚠ but the `{health.kind}` model kind does not answer questions here: use Nano or a "
                 "local checkpoint.")
    return text


def _scene(source, task, seed, upload):
    from molmoact2.spatial_session import sim_scene, upload_scene

    if source == SOURCES[1]:
        return upload_scene(upload)
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed: expected an integer, got {seed!r}") from None
    return sim_scene(task, seed)


def show_scene(source, task, seed, upload):
    """(image, status): the image the question will be about."""
    try:
        scene = _scene(source, task, seed, upload)
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return None, f"❌ **Could not make the scene.** {exc}"
    where = f"simulator `{task}` seed {seed}: *{scene.instruction}*" if scene.source == "sim" else "uploaded image"
    return scene.rgb, f"Scene: {where}."


def fill_template(template, label):
    from molmoact2.spatial_session import question_from_template

    try:
        return question_from_template(template, label)
    except ValueError as exc:
        return f"({exc})"


def ask(spec, source, task, seed, upload, question, shift_copies=True):
    """(answer markdown, drawn image, head heatmap, depth-code grid, decoded depth, rrd path). `shift_copies`:
    average a one-point answer over shifted copies of the image (`molmoact2.point_ensemble`)."""
    from molmoact2.spatial_session import ask_scene, format_load_error, get_policy, save_spatial_rrd
    from molmoact2.viz.depth import code_grid_figure, depth_image

    empty_grid = code_grid_figure(None)
    spec = str(spec or "").strip()
    try:
        scene = _scene(source, task, seed, upload)
    except Exception as exc:  # noqa: BLE001
        return f"❌ **Could not make the scene.** {exc}", None, None, empty_grid, None, None
    policy, err = get_policy(spec)
    if policy is None:
        return format_load_error(spec, err), scene.rgb, None, empty_grid, None, None
    try:
        ensemble = None
        if shift_copies:
            from molmoact2.point_ensemble import ShiftEnsemble

            ensemble = ShiftEnsemble()
        result = ask_scene(policy, scene, question, ensemble=ensemble)
    except Exception as exc:  # noqa: BLE001 - the model failed to run: say so, keep the page usable
        return (f"❌ **The model could not answer.** {type(exc).__name__}: {exc}", scene.rgb, None, empty_grid, None,
                None)
    rrd = save_spatial_rrd(result, Path(tempfile.mkdtemp(prefix="mact2-spatial-")) / "spatial.rrd")
    decoded = None if result.depth_decoded is None else depth_image(result.depth_decoded)
    summary = result.summary_md + (f"\n\n{result.head_caption}" if result.head_caption else "")
    return summary, result.drawn, result.head_image, code_grid_figure(result.depth_bins), decoded, str(rrd)


def build(ctx: AppContext) -> None:
    import gradio as gr
    from gradio_rerun import Rerun

    from molmoact2.control_session import SPATIAL_ALTERNATIVES, nano_note
    from molmoact2.sim import task_names
    from molmoact2.spatial_session import NANO_SIM_ONLY_NOTE, TEMPLATES, default_spatial_spec

    gr.Markdown(
        "Ask a model a spatial question (Molmo2-ER formats: points, counts) about a simulator scene or an uploaded "
        "image. **Model**: `nano-er` (Nano taught to answer questions; the default when shipped), `nano`, `nano:DIR`, "
        "or a local checkpoint directory — press **Check** to test it. "
        f"{NANO_SIM_ONLY_NOTE}\n\n" + nano_note(SPATIAL_ALTERNATIVES),
        elem_id="sp-intro",
    )
    with gr.Row():
        spec = gr.Textbox(value=default_spatial_spec(), label="Model (spec)", elem_id="sp-spec", scale=3)
        check = gr.Button("Check", elem_id="sp-check")
    health = gr.Markdown("Model not checked yet.", elem_id="sp-health")
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Image source", elem_id="sp-source")
            with gr.Row():
                task = gr.Dropdown(task_names(), value="touch", label="Task", elem_id="sp-task")
                seed = gr.Number(value=0, precision=0, label="Seed", elem_id="sp-seed")
            show = gr.Button("Show scene", elem_id="sp-show")
            upload = gr.Image(label="Uploaded image", type="numpy", elem_id="sp-upload", height=200)
            label = gr.Textbox(value="the red cube", label="Object (X in the templates)", elem_id="sp-label")
            with gr.Row():
                tpl_buttons = {key: gr.Button(text, size="sm", elem_id=f"sp-tpl-{key}")
                               for key, (text, _) in TEMPLATES.items()}
            question = gr.Textbox(label="Question", lines=2, elem_id="sp-question",
                                  placeholder="Pick a template above or type a question")
            copies = gr.Checkbox(value=True, elem_id="sp-copies",
                                 label="Average a point over 5 shifted copies of the image (5x the time; Nano-ER "
                                       "points inside the object more often: README \"Nano-ER\")")
            run = gr.Button("Ask", variant="primary", elem_id="sp-ask")
        with gr.Column(scale=1):
            answer = gr.Markdown("Pick a scene and a question, then **Ask**.", elem_id="sp-answer")
            with gr.Row():
                drawn = gr.Image(label="Answer drawn on the image", interactive=False, elem_id="sp-image", height=300)
                looked = gr.Image(label="Where the model looked (Nano: the grounded head, brighter = more attention)",
                                  interactive=False, elem_id="sp-head", height=300)
    with gr.Row():
        grid = gr.Plot(label="Depth codes (10x10, from the simulator's depth)", elem_id="sp-grid")
        decoded = gr.Image(label="Decoded depth (relative)", interactive=False, elem_id="sp-depth", height=300)
    viewer = Rerun(label="Rerun viewer (points lifted to 3-D at world/spatial_points)", height=520,
                   elem_id="sp-viewer")

    check.click(check_model, inputs=[spec], outputs=[health])
    show.click(show_scene, inputs=[source, task, seed, upload], outputs=[drawn, answer])
    for key, button in tpl_buttons.items():
        button.click(lambda lab, k=key: fill_template(k, lab), inputs=[label], outputs=[question])
    run.click(ask, inputs=[spec, source, task, seed, upload, question, copies],
              outputs=[answer, drawn, looked, grid, decoded, viewer])
