"""OpenFAST tab: step through how an action chunk becomes tokens, and break the tokens on purpose.

Thin: the library does the work (`molmoact2.openfast.explorer`, `.lab`; figures in
`molmoact2.viz.openfast_plots`). The tokenizer is fitted live on the chosen trajectories with the
chosen scale and vocabulary, so both knobs can be felt.
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by resolving the real
# annotation object, which string annotations would hide.
from collections import OrderedDict
from pathlib import Path

TITLE = "OpenFAST"

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DEMOS = ROOT / "assets" / "openfast_so101_sim" / "demo_actions.npz"
DEFAULT_SO101 = ROOT.parent / "shared" / "data" / "lerobot" / "so101_record_test"

SRC_SIM = "Simulator demos (shipped)"
SRC_SO101 = "SO-101 real sample (path below)"
SRC_UPLOAD = "Uploaded .npy / .csv"
SRC_SYNTH = "Synthetic smooth (labelled, built-in)"

STAGES = ["1 · actions", "2 · DCT", "3 · quantized integers", "4 · BPE tokens", "5 · decoded vs original"]
CAPTIONS = {
    STAGES[0]: "The 1-second chunk, each joint normalized to [-1, 1] by its 1st–99th percentile range. "
               "Hover for the data units.",
    STAGES[1]: "An orthonormal DCT-II runs over **time**, per joint. Row k is frequency k: a smooth motion puts "
               "almost all its energy in the first rows.",
    STAGES[2]: "Coefficients × scale, rounded half-to-even. This rounding is the ONLY lossy step; the high "
               "frequencies become long runs of 0.",
    STAGES[3]: "Flattened frequency-major (all joints' frequency 0, then 1, …), shifted by min_token, one character "
               "per integer, then byte-level BPE. Each colour is one token; long zero runs collapse into one.",
    STAGES[4]: "Ids → characters → integers → ÷ scale → inverse DCT. Error is shown per joint as a % of its range.",
}

_FITS: OrderedDict = OrderedDict()  # (source key, scale, vocab) -> FitOutcome; small LRU, fits take ~1 s
_MAX_FITS = 6


def _sources() -> list[str]:
    out = []
    if SHIPPED_DEMOS.is_file():
        out.append(SRC_SIM)
    out += [SRC_SO101, SRC_UPLOAD, SRC_SYNTH]
    return out


def _load_source(kind: str, so101_path: str, upload):
    from molmoact2.openfast.sources import ActionSource, load_actions
    from molmoact2.openfast.synthetic import SO101_JOINTS, synthetic_episodes

    if kind == SRC_SIM:
        return load_actions(SHIPPED_DEMOS), f"sim:{SHIPPED_DEMOS.stat().st_mtime}"
    if kind == SRC_SO101:
        path = Path(so101_path or "").expanduser()
        if not path.is_absolute():
            path = (ROOT / path).resolve()
        return load_actions(path), f"so101:{path}"
    if kind == SRC_UPLOAD:
        if upload is None:
            raise ValueError("choose a .npy or .csv file to upload first")
        name = upload if isinstance(upload, str) else getattr(upload, "name", str(upload))
        return load_actions(name), f"upload:{name}"
    if kind == SRC_SYNTH:
        eps = synthetic_episodes()
        return ActionSource(eps, fps=30.0, names=list(SO101_JOINTS),
                            description="SYNTHETIC smooth trajectories (not robot data)"), "synthetic"
    raise ValueError(f"unknown trajectory source {kind!r}")


def _figure(ex, stage: str):
    from molmoact2.viz import openfast_plots as P

    fn = {STAGES[0]: P.actions_figure, STAGES[1]: P.dct_figure, STAGES[2]: P.integers_figure,
          STAGES[3]: P.tokens_figure, STAGES[4]: P.decoded_figure}[stage]
    return fn(ex.insp, ex.names)


def _df(headers, rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=headers)


def build(ctx) -> None:
    import gradio as gr

    from molmoact2.openfast import explorer
    from molmoact2.openfast.lab import apply_edit, failure_report

    state: dict = {}  # per-process "last exploration" keyed by session hash, so callbacks stay cheap

    gr.Markdown(
        "## OpenFAST: how an action chunk becomes a few tokens\n"
        "Pick a trajectory, set **scale** and **vocabulary**, and step through DCT → rounding → BPE → decode. "
        "Then break the ids in the **decode-failure lab**: you get diagnostics, never silent zeros."
    )
    sources = _sources()
    with gr.Row():
        source = gr.Radio(sources, value=sources[0], label="Trajectory", elem_id="openfast-source")
        so101_path = gr.Textbox(value=str(DEFAULT_SO101), label="SO-101 LeRobot dataset path",
                                elem_id="openfast-so101-path")
        upload = gr.File(label="Upload .npy ([T, D]) or .csv (rows = steps)", file_types=[".npy", ".csv"],
                         type="filepath", elem_id="openfast-upload")
    with gr.Row():
        episode = gr.Number(value=0, precision=0, label="Episode", elem_id="openfast-episode")
        start = gr.Number(value=0, precision=0, label="Chunk start (step)", elem_id="openfast-start")
        fps = gr.Number(value=30, label="fps (only for files without one)", elem_id="openfast-fps")
        scale = gr.Slider(1, 100, value=10, step=1, label="Scale", elem_id="openfast-scale")
        vocab = gr.Dropdown([256, 512, 1024, 2048, 4096], value=1024, label="Vocabulary size",
                            elem_id="openfast-vocab")
    run = gr.Button("Fit tokenizer and inspect the chunk", variant="primary", elem_id="openfast-run")
    status = gr.Markdown(elem_id="openfast-status")
    with gr.Row():
        stage = gr.Radio(STAGES, value=STAGES[0], label="Step", elem_id="openfast-stage")
        prev_btn = gr.Button("◀ Previous", elem_id="openfast-prev", scale=0)
        next_btn = gr.Button("Next ▶", elem_id="openfast-next", scale=0)
    caption = gr.Markdown(CAPTIONS[STAGES[0]], elem_id="openfast-caption")
    plot = gr.Plot(elem_id="openfast-plot")
    gr.Markdown("### 6 · Stats: OpenFAST vs 256-bin binning vs raw floats")
    stats = gr.Dataframe(elem_id="openfast-stats", interactive=False)
    joints = gr.Dataframe(elem_id="openfast-joints", interactive=False)

    gr.Markdown("### Decode-failure lab\nEdit the ids (or use the buttons) and decode. The reference decoder "
                "would return an all-zero DCT chunk = every joint at the middle of its range.")
    ids_box = gr.Textbox(label="ids (comma-separated, edit freely)", lines=2, elem_id="openfast-ids")
    with gr.Row():
        op = gr.Radio(["drop", "insert", "edit"], value="drop", label="Operation", elem_id="openfast-op")
        position = gr.Number(value=0, precision=0, label="Position", elem_id="openfast-position")
        new_id = gr.Number(value=0, precision=0, label="New id (insert / edit)", elem_id="openfast-new-id")
        apply_btn = gr.Button("Apply to ids", elem_id="openfast-apply")
        decode_btn = gr.Button("Decode these ids", variant="primary", elem_id="openfast-decode")
    diagnostics = gr.Textbox(label="Decode result / diagnostics", lines=9, elem_id="openfast-diagnostics")
    lab_plot = gr.Plot(elem_id="openfast-lab-plot")
    lab_table = gr.Dataframe(elem_id="openfast-lab-table", interactive=False)

    def on_run(kind, path, up, ep, st, fps_v, scale_v, vocab_v, stage_v, request: gr.Request):
        try:
            src, key = _load_source(kind, path, up)
            horizon, _, _ = explorer.horizon_for(src, fps_v)
            fit_key = (key, horizon, float(scale_v), int(vocab_v))
            outcome = _FITS.get(fit_key)
            ex = explorer.explore(src, scale=_num(scale_v), vocab_size=int(vocab_v), episode=int(ep or 0),
                                  start=int(st or 0), fps=fps_v, outcome=outcome)
        except Exception as e:  # shown to the user, never swallowed
            return (f"**Error:** {e}", None, None, None, "", gr.update())
        _FITS[fit_key] = ex.outcome
        while len(_FITS) > _MAX_FITS:
            _FITS.popitem(last=False)
        state[_session(request)] = ex
        while len(state) > 32:  # bounded: one exploration per recent browser session
            state.pop(next(iter(state)))
        p, s = ex.outcome.processor, ex.outcome.stats
        msg = (f"**{src.description}** — chunk = {ex.horizon} steps × {src.action_dim} joints "
               f"(1 s at {ex.fps:g} fps{', ASSUMED: the file has no fps' if ex.fps_assumed else ''}), episode "
               f"{ex.episode}, steps {ex.start}–{ex.start + ex.horizon - 1}.  \n"
               f"Tokenizer fitted on {s.num_chunks} chunks: scale {p.scale}, min_token {p.min_token}, "
               f"max_token {p.max_token}, {p.vocab.size} tokens.  \n"
               f"**This chunk: {ex.insp.num_tokens} tokens** (256-bin binning: {ex.horizon * src.action_dim}). "
               f"Data set: {s.tokens_mean:.1f} tokens/chunk on average, {s.compression_vs_binning:.1f}× fewer than "
               f"binning, mean error {s.mean_rel_error_pct:.3f} % of joint range.")
        ids_text = ", ".join(map(str, ex.insp.ids))
        return (msg, _figure(ex, stage_v), _df(*explorer.stats_table(ex)), _df(*explorer.joint_table(ex)),
                ids_text, gr.update(value=None))

    def on_stage(stage_v, request: gr.Request):
        ex = state.get(_session(request))
        return CAPTIONS[stage_v], (None if ex is None else _figure(ex, stage_v))

    def step(delta):
        def move(stage_v):
            i = min(max(STAGES.index(stage_v) + delta, 0), len(STAGES) - 1)
            return STAGES[i]
        return move

    def on_apply(ids_text, op_v, pos_v, new_v):
        try:
            ids = _parse_ids(ids_text)
            return ", ".join(map(str, apply_edit(ids, op_v, int(pos_v or 0), None if op_v == "drop" else int(new_v))))
        except ValueError as e:
            raise gr.Error(str(e)) from None

    def on_decode(ids_text, request: gr.Request):
        ex = state.get(_session(request))
        if ex is None:
            return "Fit and inspect a chunk first.", None, None
        try:
            ids = _parse_ids(ids_text)
        except ValueError as e:
            return f"Could not read the ids: {e}", None, None
        from molmoact2.viz.openfast_plots import lab_figure

        rep = failure_report(ex.outcome.processor, ids, ex.insp.actions, ex.outcome.normalizer)
        if rep.decoded_ok:
            dev = rep.max_deviation("decoded")
            text = (f"DECODED OK: {len(ids)} ids -> [{ex.horizon}, {len(ex.names)}] actions.\n"
                    f"Max deviation from the true chunk per joint (data units): "
                    + ", ".join(f"{n} {v:.3f}" for n, v in zip(ex.names, dev)))
        else:
            dz = rep.max_deviation("zeros")
            text = (rep.error_text + "\n\nNo actions sent. Had the reference zero-fallback been used, the robot would "
                    "have been commanded to the middle of every joint's range for the whole chunk: max jump "
                    + ", ".join(f"{n} {v:.1f}" for n, v in zip(ex.names, dz)) + " (data units).")
        return text, lab_figure(rep, ex.names), _df(*explorer.lab_table(rep, ex.names))

    inputs = [source, so101_path, upload, episode, start, fps, scale, vocab, stage]
    run.click(on_run, inputs, [status, plot, stats, joints, ids_box, diagnostics])
    stage.change(on_stage, [stage], [caption, plot])
    prev_btn.click(step(-1), [stage], [stage])
    next_btn.click(step(+1), [stage], [stage])
    apply_btn.click(on_apply, [ids_box, op, position, new_id], [ids_box])
    decode_btn.click(on_decode, [ids_box], [diagnostics, lab_plot, lab_table])


def _session(request) -> str:
    return getattr(request, "session_hash", None) or "default"


def _num(x):
    x = float(x)
    return int(x) if x.is_integer() else x


def _parse_ids(text: str) -> list[int]:
    parts = [p.strip() for p in (text or "").replace("\n", ",").split(",") if p.strip()]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text[:80]!r}") from None
