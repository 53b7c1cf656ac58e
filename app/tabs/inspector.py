"""Output inspector: paste any MolmoAct2 / Molmo2-ER output (plus an optional image) and see it parsed.

All parsing and drawing happens in `molmoact2.inspect_output`; this module only wires widgets.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from app.main import AppContext

TITLE = "Output inspector"

_POINT_HEADERS = ["image", "id", "x", "y", "scale", "x_px", "y_px", "label"]


def run_inspection(text: str, image):
    """Gradio callback: returns (summary, drawn image, depth-grid figure, points table, action ids, rrd path)."""
    from molmoact2.inspect_output import inspect_output
    from molmoact2.viz.depth import code_grid_figure
    from molmoact2.viz.logger import save_rrd

    try:
        result = inspect_output(text, image)
    except ValueError as err:  # bad image input, not bad model output
        return f"**Could not inspect.** {err}", None, code_grid_figure(None), [], "", None
    rrd = None
    if result.step is not None:
        rrd = save_rrd([result.step], Path(tempfile.mkdtemp(prefix="mact2-inspect-")) / "inspect.rrd")
    ids = "" if result.action_ids is None else " ".join(map(str, result.action_ids))
    return (result.summary_md, result.image, code_grid_figure(result.depth_bins), result.points_table, ids,
            None if rrd is None else str(rrd))


def build(ctx: AppContext) -> None:
    import gradio as gr
    from gradio_rerun import Rerun

    from molmoact2.examples import output_examples

    examples = output_examples()
    gr.Markdown(
        "Paste what MolmoAct2 generated (`<depth_start>…`, `<action_start>…`) or what Molmo2-ER answered "
        "(`<points coords=…>`, counts, boxes), optionally with the image it was about. Malformed outputs are "
        "explained, not hidden."
    )
    with gr.Row():
        with gr.Column(scale=1):
            text = gr.Textbox(label="Model output", lines=8, elem_id="inspector-text",
                              placeholder='<points coords="1 1 500 420">red cube</points>')
            image = gr.Image(label="Image (optional)", type="numpy", elem_id="inspector-input-image", height=240)
            run = gr.Button("Inspect", variant="primary", elem_id="inspector-run")
            examples_slot = gr.Column()
        with gr.Column(scale=1):
            summary = gr.Markdown("Paste a model output, or pick an example.", elem_id="inspector-summary")
            drawn = gr.Image(label="Drawn on the image", interactive=False, elem_id="inspector-image", height=300)
    with gr.Row():
        grid = gr.Plot(label="Depth codes (10x10)", elem_id="inspector-grid")
        with gr.Column():
            points = gr.Dataframe(headers=_POINT_HEADERS, label="Points", interactive=False, elem_id="inspector-points")
            action_ids = gr.Textbox(label="OpenFAST action ids", interactive=False, elem_id="inspector-actions")
    viewer = Rerun(label="Rerun viewer", height=520, elem_id="inspector-viewer")
    outputs = [summary, drawn, grid, points, action_ids, viewer]
    run.click(run_inspection, inputs=[text, image], outputs=outputs)
    with examples_slot:
        # One click on an example fills the box AND runs it (no second click on "Inspect").
        gr.Examples(examples=[[e.text] for e in examples], inputs=[text], outputs=outputs,
                    fn=lambda t: run_inspection(t, None), run_on_click=True, cache_examples=False,
                    example_labels=[e.name for e in examples], label="Examples (click one)",
                    elem_id="inspector-examples", examples_per_page=20)
