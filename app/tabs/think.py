"""Think debugger: which depth cells MolmoThink re-predicts each step, and what a threshold would change.

Thin: sessions, masks, codes and clouds come from `molmoact2.depth` / `molmoact2.geometry`;
pictures from `molmoact2.viz.depth`.
"""

from __future__ import annotations

import numpy as np

TITLE = "Think debugger"

SOURCES = ["Demo: boxes scene (MuJoCo)", "Simulator expert (live)", "Recording directory",
           "Nano with Think (live, closed loop)"]
SIM_TASKS = ["pick_place", "push_left", "push_right", "touch"]  # SimEnv.task_names() (single arm)


def _codec(vae_path: str | None):
    from molmoact2.depth.codec import DEFAULT_ASSET_DIR, DepthCodec

    if vae_path and vae_path.strip():
        return DepthCodec.load(vae_path.strip()), f"`{vae_path.strip()}`"
    if DEFAULT_ASSET_DIR.exists():
        return DepthCodec.load(), "our weights (assets/depth_vqvae)"
    return None, "no VQ-VAE weights (train with `molmoact2 depth train`)"


def load_session(source: str, path: str, task: str, seed: float, n_steps: float, vae_path: str):
    """Build a ThinkSession from the chosen source (library calls only)."""
    from molmoact2.depth import live, session

    codec, codec_note = _codec(vae_path)
    if source == SOURCES[0]:
        steps = live.boxes_steps(int(seed), int(n_steps))
        label = f"boxes scene seed {int(seed)}"
    elif source == SOURCES[1]:
        steps = live.sim_expert_steps(task, int(seed), int(n_steps))
        label = f"simulator expert: {task} seed {int(seed)}"
    elif source == SOURCES[3]:
        from molmoact2.think_live import policy_think_steps

        # the path box doubles as the model spec here (default: the shipped Nano)
        spec = path.strip() if path and path.strip() else "nano"
        steps = policy_think_steps(spec, task, int(seed), int(n_steps))
        label = f"{steps[0].backend} with Think: {task} seed {int(seed)}, closed loop"
    else:
        if not path or not path.strip():
            raise ValueError("Recording directory: expected a path to a recording (recording.json) or Step directories")
        steps = session.load_steps(path.strip())
        label = path.strip()
    sess = session.from_steps(steps, codec, label=label)
    return sess, codec, codec_note


def true_codes(sess, codec) -> np.ndarray | None:
    """VQ-VAE codes of the TRUE depth per step, when the session holds a model's own codes and depth maps:
    where they differ is where the model's depth reasoning is wrong."""
    if codec is None or sess.codes_source != "recorded depth_bins" or any(
            f is None or f.depth_m is None for f in sess.frames):
        return None
    return np.stack([codec.encode(depth_m=f.depth_m) for f in sess.frames])


def build(ctx) -> None:
    import gradio as gr

    from molmoact2.depth.think import THINK_THRESHOLD

    gr.Markdown(
        "MolmoThink re-predicts only the depth cells whose 32x32 patch of the main image changed "
        "(cosine similarity of raw RGB < threshold); the rest are replayed from the cache. "
        "Load a sequence, scrub the steps, and move the threshold to see what it would re-predict."
    )
    state = gr.State(None)
    with gr.Row():
        source = gr.Dropdown(SOURCES, value=SOURCES[0], label="source", elem_id="think-source")
        path = gr.Textbox(label="recording directory (or model spec for the live Nano source; default nano)",
                          placeholder="runs/my_recording", elem_id="think-path")
        task = gr.Dropdown(SIM_TASKS, value="pick_place", label="simulator task", allow_custom_value=True, elem_id="think-task")
        seed = gr.Number(value=0, precision=0, label="seed", elem_id="think-seed")
        n_steps = gr.Number(value=16, precision=0, label="steps", elem_id="think-nsteps")
    with gr.Row():
        vae = gr.Textbox(label="VQ-VAE (optional: our weights dir or MolmoAct's vae-final.pt)", elem_id="think-vae")
        load = gr.Button("Load", variant="primary", elem_id="think-load")
    status = gr.Markdown("Nothing loaded yet.", elem_id="think-status")
    with gr.Row():
        step = gr.Slider(0, 1, value=0, step=1, label="step", elem_id="think-step")
        threshold = gr.Slider(0.95, 1.0, value=THINK_THRESHOLD, step=0.0005, label="threshold (what-if)", elem_id="think-threshold")
    with gr.Row():
        mask_img = gr.Image(label="main image: re-predicted cells in red", elem_id="think-mask", type="numpy", interactive=False)
        grid_plot = gr.Plot(label="depth codes (carried-forward buffer)", elem_id="think-grid")
        decoded_img = gr.Image(label="decoded depth (fixed range [-1, 1])", elem_id="think-decoded", type="numpy", interactive=False)
    with gr.Row():
        curve = gr.Plot(label="cells re-predicted per step", elem_id="think-curve")
        cloud = gr.Plot(label="point cloud", elem_id="think-cloud")
    step_info = gr.Markdown("", elem_id="think-step-info")

    def on_load(source, path, task, seed, n_steps, vae, threshold):
        try:
            sess, codec, note = load_session(source, path, task, seed, n_steps, vae)
        except Exception as exc:  # shown to the user, never swallowed
            raise gr.Error(f"{type(exc).__name__}: {exc}") from exc
        truth = true_codes(sess, codec)
        data = {"session": sess, "codec": codec, "note": note, "truth": truth}
        s = sess.summary(threshold)
        md = (f"**{sess.label}** — {len(sess)} steps; codes: {sess.codes_source}; VQ-VAE: {note}.  \n"
              f"At threshold {threshold:.4f}: {s['mean_cells_repredicted']:.1f} of 100 cells re-predicted per step "
              f"(after the first), {s['mean_forward_passes']:.1f} decode forward passes instead of 100.")
        if truth is not None:
            md += (f"  \nThe model's codes equal the VQ-VAE codes of the true depth in "
                   f"**{100 * float(np.mean(truth == sess.codes)):.0f}%** of cells (all steps).")
        return (data, md, gr.Slider(minimum=0, maximum=max(len(sess) - 1, 1), value=0, step=1), *render_curve(data, threshold),
                *render_step(data, 0, threshold))

    def render_curve(data, threshold):
        from molmoact2.viz.depth import repredicted_figure

        if data is None:
            return (None,)
        sess = data["session"]
        series = {f"re-predicted @ {threshold:.4f}": sess.trace(threshold).cells_repredicted}
        if abs(threshold - THINK_THRESHOLD) > 1e-9:
            series[f"re-predicted @ {THINK_THRESHOLD} (model)"] = sess.trace(THINK_THRESHOLD).cells_repredicted
        stale = sess.stale_cells(threshold)
        if stale is not None:
            series["stale cells in the buffer"] = stale
        if sess.recorded_masks is not None:
            series["recorded mask"] = sess.recorded_masks.sum(axis=1)
        if data.get("truth") is not None:
            series["cells where the model's code != VQ-VAE of true depth"] = (data["truth"] != sess.codes).sum(axis=1)
        return (repredicted_figure(np.arange(len(sess)), series, "MolmoThink: cells re-predicted per step"),)

    def render_step(data, i, threshold):
        from molmoact2.depth import think
        from molmoact2.viz.depth import code_grid_figure, depth_image, mask_overlay, point_cloud_figure

        if data is None:
            return None, None, None, None, ""
        sess, codec = data["session"], data["codec"]
        i = int(min(max(int(i), 0), len(sess) - 1))
        tr = sess.trace(threshold)
        mask = tr.masks[i]
        bins = tr.buffers[i] if sess.codes is not None else None
        overlay = mask_overlay(sess.images[i], mask)
        grid = code_grid_figure(bins, mask, title=f"step {i}: codes ({sess.codes_source})")
        decoded = depth_image(codec.decode(bins)) if (codec is not None and bins is not None) else None
        frame = sess.frames[i]
        pts = cols = None
        if frame is not None and frame.depth_m is not None and frame.K is not None:
            from molmoact2.geometry.pointcloud import CloudConfig, cloud_arrays, point_cloud

            pcd = point_cloud(frame.depth_m, frame.K, frame.T_world_cam, frame.rgb,
                              CloudConfig(voxel_size_m=0.01, estimate_normals=False, max_depth_m=3.0))
            pts, cols, _ = cloud_arrays(pcd)
        cost = think.decode_cost(mask)
        spans = think.update_spans(mask)
        info = (f"step {i}: **{cost.cells_repredicted}** cells re-predicted, {cost.tokens_saved} replayed, "
                f"{cost.forward_passes} decode forward passes, {len(spans)} spans at threshold {threshold:.4f} "
                f"(min similarity {np.nanmin(sess.similarities[i]) if i else float('nan'):.4f}).")
        return overlay, grid, decoded, point_cloud_figure(pts, cols), info

    outs_step = [mask_img, grid_plot, decoded_img, cloud, step_info]
    load.click(on_load, [source, path, task, seed, n_steps, vae, threshold], [state, status, step, curve, *outs_step])
    step.change(render_step, [state, step, threshold], outs_step)
    threshold.change(lambda d, i, t: (*render_curve(d, t), *render_step(d, i, t)), [state, step, threshold], [curve, *outs_step])
